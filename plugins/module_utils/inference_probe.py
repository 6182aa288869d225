# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Prove that an OpenAI-compatible vLLM server (and optionally the WebUI in front of it) really answers.

Pure Python, standard library only (``urllib.request``), no Ansible: the module
``qwen3vl.ha.inference_probe`` is a thin wrapper and the unit tests call these functions directly.

The probe runs up to three steps, in this order, and stops at the first that fails:

``models``
    ``GET {url}/v1/models`` must list the served model name. Within ``wait_timeout`` it is tried
    again every ``interval`` seconds while the answer means "not up yet" (connection refused or
    reset, a timeout, HTTP 5xx/408/429, the name not listed yet). Answers that waiting cannot fix
    (401/403: the key; other 4xx: the URL; a body that is not JSON; an untrusted TLS certificate)
    fail at once.
``chat``
    ``POST {url}/v1/chat/completions`` with a prompt and one small image (PNG/JPEG data URL),
    ``temperature`` 0, plain JSON or server-sent events (``stream``). It passes on HTTP 200 with a
    non-empty answer and a known ``finish_reason``. Tried once.
``webui``
    ``GET {webui_url}{webui_health_path}`` must answer 2xx, with the same waiting rules as
    ``models``. No key or extra header is sent to it.

``wait_timeout`` is one deadline for the whole probe, counted from its start; every step gets at
least one attempt even when the deadline has passed. The API key is sent only as
``Authorization: Bearer`` to ``url`` and is replaced by ``********`` in every text this module
returns, even where a server echoes it back.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import ssl
import struct
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib

from ansible_collections.qwen3vl.ha.plugins.module_utils import checks

DEFAULT_PROMPT = "Describe this image in one short sentence."
FINISH_REASONS = ("stop", "length", "tool_calls", "function_call", "content_filter")
ANSWER_LIMIT = 500  # characters of the answer returned
# What chat_step reports about the answer; probe() returns the same keys (None when chat did not run).
CHAT_DETAILS = ("answer", "answer_from", "finish_reason", "usage", "ttft_s", "latency_s")
EXCERPT_LIMIT = 300  # characters of an error body quoted in a message
MAX_BODY = 4 << 20  # bytes read from a non-streamed answer
MAX_IMAGE = 10 << 20  # bytes: an image_path larger than this is not a probe image
RETRY_STATUSES = (408, 425, 429)  # and every 5xx: "not now", waiting may help
MASK = "********"
# Side of the generated probe image. Qwen-VL image processors (transformers' smart_resize) reject
# images smaller than patch size x merge size (28 px for Qwen2.5-VL, 32 px for Qwen3-VL) in some
# versions, so the probe image must not be tiny in pixels, only in bytes.
PROBE_IMAGE_SIZE = 64
USER_AGENT = "qwen3vl.ha-inference_probe"

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"


class ProbeError(Exception):
    """Input the probe cannot use (an image, a CA file); the message says which and why."""


# --------------------------------------------------------------------------------------------
# Input checks and the probe image


def check_options(
    *, url, webui_url=None, webui_health_path="/", headers=None, interval=2, wait_timeout=0, timeout=60, max_tokens=16
):
    """Return a list of problems with the options (empty when they are fine)."""
    errors = []
    for name, value in (headers or {}).items():
        if not name or any(char in "%s%s" % (name, value) for char in "\r\n\0") or ":" in name:
            errors.append("headers: %r is not a valid HTTP header (name: value on one line)" % name)
    for name, value in (("url", url), ("webui_url", webui_url)):
        if value is not None:
            checks.add(errors, checks.base_url(value, name, "api_key or headers"))
    if url and url.rstrip("/").endswith("/v1"):
        errors.append("url is the base URL without /v1 (the probe adds /v1/models), got %r" % url)
    if not webui_health_path.startswith("/"):
        errors.append("webui_health_path must start with '/', got %r" % webui_health_path)
    if interval <= 0:
        errors.append("interval must be more than 0 seconds, got %s" % interval)
    if wait_timeout < 0:
        errors.append("wait_timeout must be 0 (one try) or more seconds, got %s" % wait_timeout)
    if timeout <= 0:
        errors.append("timeout must be more than 0 seconds, got %s" % timeout)
    if max_tokens < 1:
        errors.append("max_tokens must be 1 or more, got %s" % max_tokens)
    return errors


def tiny_png(width=PROBE_IMAGE_SIZE, height=PROBE_IMAGE_SIZE):
    """A small RGB PNG of four coloured quarters (red, green / blue, yellow), built with zlib and
    struct only. It compresses to a few hundred bytes whatever its size."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    quarters = (((255, 0, 0), (0, 160, 0)), ((0, 0, 255), (255, 220, 0)))
    rows = []
    for y in range(height):
        colours = quarters[0 if y < height // 2 else 1]
        row = bytearray([0])  # filter type 0 (None) for every scanline
        for x in range(width):
            row += bytes(colours[0 if x < width // 2 else 1])
        rows.append(bytes(row))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return PNG_MAGIC + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + chunk(b"IEND", b"")


def image_type(data):
    """'image/png' or 'image/jpeg' from the file's first bytes, or None."""
    if data.startswith(PNG_MAGIC):
        return "image/png"
    if data.startswith(JPEG_MAGIC):
        return "image/jpeg"
    return None


def load_image(path):
    """Read a PNG or JPEG file; raises ProbeError naming the file and what is wrong with it."""
    try:
        size = os.path.getsize(path)
        if size > MAX_IMAGE:
            raise ProbeError("image_path %s is %d bytes; a probe image must be at most %d" % (path, size, MAX_IMAGE))
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ProbeError("image_path %s: cannot read: %s" % (path, exc.strerror or exc)) from exc
    if not data:
        raise ProbeError("image_path %s is empty" % path)
    if image_type(data) is None:
        raise ProbeError("image_path %s is not a PNG or JPEG file (it starts with %r)" % (path, data[:8]))
    return data


def data_url(data):
    kind = image_type(data)
    if kind is None:
        raise ProbeError("the probe image is not a PNG or JPEG")
    return "data:%s;base64,%s" % (kind, base64.b64encode(data).decode("ascii"))


def chat_request_body(*, model, prompt, image, max_tokens, stream):
    """The JSON body of the chat completion request (image: PNG or JPEG bytes)."""
    body = {
        "model": model,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": prompt},
                    {"type": "image_url", "image_url": {"url": data_url(image)}},
                ],
            }
        ],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


# --------------------------------------------------------------------------------------------
# Texts for people


class Redactor:
    """Replaces the secrets (the API key) in any text that leaves the probe."""

    def __init__(self, *secrets):
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text):
        if text is None:
            return None
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text


def excerpt(text, limit=EXCERPT_LIMIT):
    """One line of at most limit characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error_message(body):
    """The server's own words from an error body: OpenAI/vLLM ``{"error": {"message": ...}}``,
    ``{"error": "..."}``, FastAPI ``{"detail": ...}``, ``{"message": ...}``, a health check's
    ``{"reason": ...}``, else the text itself."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        doc = json.loads(body)
    except ValueError:
        return excerpt(body) or "(empty body)"
    if isinstance(doc, dict):
        error = doc.get("error")
        if isinstance(error, dict) and error.get("message"):
            return excerpt(str(error["message"]))
        for value in (error, doc.get("detail"), doc.get("message"), doc.get("reason")):
            if isinstance(value, str) and value:
                return excerpt(value)
            if value:
                return excerpt(json.dumps(value))
    return excerpt(body)


def origin(url):
    parts = urllib.parse.urlsplit(url)
    return "%s://%s" % (parts.scheme, parts.netloc)


def http_reason(status):
    try:
        return "%d %s" % (status, http.client.responses[status])
    except KeyError:
        return str(status)


def plural(count, word):
    return "%d %s%s" % (count, word, "" if count == 1 else "s")


# --------------------------------------------------------------------------------------------
# HTTP


def ssl_context(validate_certs=True, ca_path=None):
    """TLS settings for https URLs; ca_path may be a CA bundle file or an OpenSSL hashed directory."""
    try:
        if not validate_certs:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        if ca_path and os.path.isdir(ca_path):
            return ssl.create_default_context(capath=ca_path)
        return ssl.create_default_context(cafile=ca_path or None)
    except (OSError, ssl.SSLError) as exc:
        raise ProbeError("ca_path %s: cannot load CA certificates: %s" % (ca_path, exc)) from exc


class Response:
    """What one HTTP exchange gave: status and body, or a network error (status None)."""

    def __init__(self, *, status=None, body=b"", error=None, retry=False, latency=0.0):
        self.status = status
        self.body = body
        self.error = error
        self.retry = retry
        self.latency = latency


class Client:
    """urllib with the probe's TLS, proxy and header settings; redirects are followed for GET."""

    def __init__(self, *, context=None, use_proxy=True):
        handlers = [urllib.request.HTTPSHandler(context=context)]
        if not use_proxy:
            handlers.append(urllib.request.ProxyHandler({}))
        self.opener = urllib.request.build_opener(*handlers)

    def open(self, url, *, method="GET", headers=None, payload=None, timeout=60):
        """Send the request; return the open response. Raises urllib.error.HTTPError for non-2xx
        (its body is readable) and OSError/HTTPException for network trouble."""
        data = None
        all_headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if payload is not None:
            data = json.dumps(payload).encode("utf-8")
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        request = urllib.request.Request(url, data=data, headers=all_headers, method=method)
        return self.opener.open(request, timeout=timeout)

    def fetch(self, url, *, method="GET", headers=None, payload=None, timeout=60):
        """One request, read whole; never raises for HTTP or network trouble (see Response)."""
        start = time.monotonic()
        try:
            with self.open(url, method=method, headers=headers, payload=payload, timeout=timeout) as answer:
                body = answer.read(MAX_BODY)
                return Response(status=answer.status, body=body, latency=time.monotonic() - start)
        except urllib.error.HTTPError as exc:
            body = _read_error_body(exc)
            return Response(
                status=exc.code,
                body=body,
                retry=exc.code >= 500 or exc.code in RETRY_STATUSES,
                latency=time.monotonic() - start,
            )
        except (OSError, http.client.HTTPException) as exc:
            error, retry = network_error(exc, url, timeout)
            return Response(error=error, retry=retry, latency=time.monotonic() - start)


def network_error(exc, url, timeout):
    """(message, retry) for an error below HTTP; retry says whether waiting may help."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    where = origin(url)
    retry = True
    if isinstance(reason, ssl.SSLCertVerificationError):
        retry = False
        message = "TLS certificate of %s is not trusted: %s (set ca_path to its CA, or validate_certs=false)" % (
            where,
            reason.verify_message or reason,
        )
    elif isinstance(reason, ssl.SSLError):
        retry = False
        message = "TLS handshake with %s failed: %s (http:// vs https:// mix-up?)" % (where, reason)
    elif isinstance(reason, http.client.RemoteDisconnected):  # before ConnectionResetError: a subclass
        message = "%s closed the connection without answering" % where
    elif isinstance(reason, ConnectionRefusedError):
        message = "connection refused at %s" % where
    elif isinstance(reason, ConnectionResetError):
        message = "connection reset by %s" % where
    elif isinstance(reason, (socket.timeout, TimeoutError)):
        message = "no answer from %s within %s s (timeout)" % (url, _seconds(timeout))
    elif isinstance(reason, socket.gaierror):
        message = "cannot resolve %s: %s" % (urllib.parse.urlsplit(url).hostname, reason.strerror or reason)
    elif isinstance(reason, http.client.InvalidURL):
        retry = False
        message = "invalid URL %s: %s" % (url, reason)
    elif isinstance(reason, http.client.HTTPException):
        message = "%s sent a broken HTTP answer: %s" % (where, type(reason).__name__)
    else:
        message = "%s: %s" % (where, getattr(reason, "strerror", None) or reason)
    return message, retry


def _read_error_body(exc):
    try:
        return exc.read(MAX_BODY) or b""
    except (OSError, http.client.HTTPException):
        return b""


def _seconds(value):
    """An option's seconds without trailing zeros: 60.0 -> '60', 0.5 -> '0.5'."""
    return ("%.3f" % value).rstrip("0").rstrip(".")


# --------------------------------------------------------------------------------------------
# Steps


def _step(name, url):
    return {"name": name, "url": url, "ok": False, "status": None, "latency_s": None, "attempts": 0, "error": None}


def _wait_loop(step, *, started, deadline, interval, attempt):
    """Call attempt() until it passes, fails for good, or the deadline passes; at least once.

    attempt() returns (ok, error, retry): retry says whether waiting may help. Fills step (ok,
    attempts, error); a failure that waiting could have fixed says how long the probe (which
    started at started) has waited.
    """
    waiting = deadline > started
    while True:
        step["attempts"] += 1
        ok, error, retry = attempt()
        if ok:
            step["ok"], step["error"] = True, None
            return True
        remaining = deadline - time.monotonic()
        if not retry or remaining <= 0:
            if waiting and (retry or step["attempts"] > 1):
                waited = time.monotonic() - started
                error = "%s, after %s s (%s)" % (
                    error,
                    _seconds(round(waited, 1) if waited < 10 else round(waited)),
                    plural(step["attempts"], "attempt"),
                )
            elif retry:
                error += " (1 attempt; wait_timeout 0: set it to wait for the service to come up)"
            step["error"] = error
            return False
        time.sleep(min(interval, remaining))


def _attempt_timeout(timeout, deadline):
    """Per-request timeout: the option, but not (much) past the wait deadline."""
    remaining = deadline - time.monotonic()
    return timeout if remaining <= 0 else max(min(timeout, remaining), 1.0)


def models_step(client, *, url, model, headers, timeout, started, deadline, interval):
    """GET /v1/models until the model is listed. Returns (step, served model names)."""
    target = url + "/v1/models"
    step = _step("models", target)
    served = []

    def attempt():
        answer = client.fetch(target, headers=headers, timeout=_attempt_timeout(timeout, deadline))
        step["status"], step["latency_s"] = answer.status, round(answer.latency, 3)
        if answer.status is None:
            return False, answer.error, answer.retry
        if answer.status in (401, 403):
            return (
                False,
                "%s from %s: api_key wrong or missing (server: %s)"
                % (http_reason(answer.status), target, error_message(answer.body)),
                False,
            )
        if answer.status >= 300:
            hint = " (is url the vLLM base URL?)" if answer.status == 404 else ""
            return (
                False,
                "%s returned HTTP %d: %s%s" % (target, answer.status, error_message(answer.body), hint),
                answer.retry,
            )
        try:
            names = [str(item["id"]) for item in json.loads(answer.body)["data"]]
        except (ValueError, KeyError, TypeError):
            return (
                False,
                "%s did not answer an OpenAI model list: %s"
                % (target, excerpt(answer.body.decode("utf-8", "replace")) or "(empty body)"),
                False,
            )
        served[:] = names
        if model not in names:
            return False, "model %r not served; served: %r" % (model, names), True
        return True, None, False

    _wait_loop(step, started=started, deadline=deadline, interval=interval, attempt=attempt)
    return step, served


def chat_step(client, *, url, headers, body, timeout):
    """POST /v1/chat/completions once. Returns (step, details) with answer, finish_reason, usage, ttft_s."""
    target = url + "/v1/chat/completions"
    step = _step("chat", target)
    step["attempts"] = 1
    details = dict.fromkeys(CHAT_DETAILS)
    start = time.monotonic()
    try:
        if body.get("stream"):
            parsed = _stream_chat(client, target, headers=headers, body=body, timeout=timeout, start=start)
        else:
            parsed = _plain_chat(client, target, headers=headers, body=body, timeout=timeout)
    except _ChatFailure as failure:
        step["status"], step["error"] = failure.status, failure.message
        step["latency_s"] = round(time.monotonic() - start, 3)
        return step, details
    latency = time.monotonic() - start
    step["status"], step["latency_s"] = 200, round(latency, 3)
    details["latency_s"] = round(latency, 3)
    if parsed.get("ttft") is not None:
        details["ttft_s"] = round(parsed["ttft"], 3)
    answer = parsed["answer"]
    details["answer"] = answer  # whole: probe() masks the key, then shortens it
    details["finish_reason"] = parsed["finish_reason"]
    details["usage"] = parsed["usage"]
    details["answer_from"] = parsed["answer_from"]
    if not answer.strip():
        step["error"] = "chat completion returned an empty answer (finish_reason %s)" % parsed["finish_reason"]
    elif parsed["finish_reason"] not in FINISH_REASONS:
        step["error"] = "chat completion returned finish_reason %r; expected one of %s" % (
            parsed["finish_reason"],
            ", ".join(FINISH_REASONS),
        )
    else:
        step["ok"] = True
    return step, details


class _ChatFailure(Exception):
    def __init__(self, message, status=None):
        super().__init__(message)
        self.message = message
        self.status = status


def _chat_http_error(status, body):
    if status in (401, 403):
        message = "chat completion returned %s: api_key wrong or missing (server: %s)" % (
            http_reason(status),
            error_message(body),
        )
    else:
        message = "chat completion returned HTTP %d: %s" % (status, error_message(body))
    return _ChatFailure(message, status)


def _plain_chat(client, target, *, headers, body, timeout):
    answer = client.fetch(target, method="POST", headers=headers, payload=body, timeout=timeout)
    if answer.status is None:
        raise _ChatFailure("chat completion failed: %s" % answer.error)
    if answer.status != 200:
        raise _chat_http_error(answer.status, answer.body)
    try:
        doc = json.loads(answer.body)
        choice = doc["choices"][0]
        message = choice.get("message")
        if not isinstance(message, dict):
            raise TypeError("no message")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise _ChatFailure(
            "chat completion answer is not an OpenAI chat completion: %s"
            % (excerpt(answer.body.decode("utf-8", "replace")) or "(empty body)"),
            200,
        ) from None
    text, source = _pick_text(message)
    return {
        "answer": text,
        "answer_from": source,
        "finish_reason": choice.get("finish_reason"),
        "usage": doc.get("usage"),
    }


def _pick_text(message):
    """The answer text and the field it came from. A thinking model may spend max_tokens on
    reasoning (vLLM's reasoning parser puts it in reasoning_content / reasoning): that counts."""
    for field in ("content", "reasoning_content", "reasoning"):
        value = message.get(field)
        if isinstance(value, str) and value.strip():
            return value, field
    return "", "content"


def _stream_chat(client, target, *, headers, body, timeout, start):
    """Read the server-sent events as they arrive; the first non-empty delta sets ttft."""
    stream_headers = dict(headers, Accept="text/event-stream")
    try:
        answer = client.open(target, method="POST", headers=stream_headers, payload=body, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise _chat_http_error(exc.code, _read_error_body(exc)) from None
    except (OSError, http.client.HTTPException) as exc:
        raise _ChatFailure("chat completion failed: %s" % network_error(exc, target, timeout)[0]) from None
    parts = {"content": [], "reasoning_content": [], "reasoning": []}
    result = {"ttft": None, "finish_reason": None, "usage": None}
    events = 0
    done = False
    with answer:
        while True:
            if time.monotonic() - start > timeout:
                raise _ChatFailure(
                    "chat completion stream did not finish within %s s (%s so far)"
                    % (_seconds(timeout), plural(events, "event")),
                    200,
                )
            try:
                raw = answer.readline()
            except (OSError, http.client.HTTPException) as exc:
                message = network_error(exc, target, timeout)[0]
                raise _ChatFailure(
                    "chat completion stream broke after %s: %s" % (plural(events, "event"), message), 200
                ) from None
            if not raw:
                break
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not line.startswith("data:"):
                continue  # blank separators, ": keep-alive" comments, event:/id: fields
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                break
            events += 1
            try:
                chunk = json.loads(data)
            except ValueError:
                raise _ChatFailure(
                    "chat completion stream sent a line that is not JSON: %s" % excerpt(data), 200
                ) from None
            if not isinstance(chunk, dict):
                raise _ChatFailure("chat completion stream sent %s instead of a chunk" % excerpt(data), 200)
            if chunk.get("error"):
                raise _ChatFailure("chat completion stream reported an error: %s" % error_message(data), 200)
            if chunk.get("usage"):
                result["usage"] = chunk["usage"]
            for choice in chunk.get("choices") or []:
                if not isinstance(choice, dict):
                    continue
                delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
                for field, collected in parts.items():
                    value = delta.get(field)
                    if isinstance(value, str) and value:
                        if result["ttft"] is None and value.strip():
                            result["ttft"] = time.monotonic() - start
                        collected.append(value)
                if choice.get("finish_reason"):
                    result["finish_reason"] = choice["finish_reason"]
    if not done:
        kind = answer.headers.get("Content-Type") or "no Content-Type"
        hint = "" if kind.startswith("text/event-stream") else " (the server answered %s, not text/event-stream)" % kind
        raise _ChatFailure(
            "chat completion stream ended without 'data: [DONE]' after %s%s" % (plural(events, "event"), hint), 200
        )
    result["answer"], result["answer_from"] = _pick_text({field: "".join(chunks) for field, chunks in parts.items()})
    return result


def webui_step(client, *, url, timeout, started, deadline, interval):
    """GET the WebUI health URL until it answers 2xx."""
    step = _step("webui", url)

    def attempt():
        answer = client.fetch(url, headers={"Accept": "*/*"}, timeout=_attempt_timeout(timeout, deadline))
        step["status"], step["latency_s"] = answer.status, round(answer.latency, 3)
        if answer.status is None:
            return False, "WebUI health %s: %s" % (url, answer.error), answer.retry
        if 200 <= answer.status < 300:
            return True, None, False
        return (
            False,
            "WebUI health %s returned %d: %s" % (url, answer.status, error_message(answer.body)),
            answer.retry,
        )

    _wait_loop(step, started=started, deadline=deadline, interval=interval, attempt=attempt)
    return step


def _describe_answer(details):
    """'chat answered in 0.41 s, first token after 0.05 s, 16 tokens (finish_reason length)'."""
    text = "chat answered in %s s" % _seconds(round(details["latency_s"], 2))
    if details["ttft_s"] is not None:
        text += ", first token after %s s" % _seconds(round(details["ttft_s"], 2))
    tokens = (details["usage"] or {}).get("completion_tokens")
    if isinstance(tokens, int):
        text += ", " + plural(tokens, "token")
    return text + " (finish_reason %s)" % details["finish_reason"]


# --------------------------------------------------------------------------------------------
# The whole probe


def probe(
    *,
    url,
    model,
    api_key=None,
    headers=None,
    prompt=DEFAULT_PROMPT,
    image_path=None,
    max_tokens=16,
    stream=False,
    chat=True,
    webui_url=None,
    webui_health_path="/",
    wait_timeout=0,
    interval=2,
    timeout=60,
    validate_certs=True,
    ca_path=None,
    use_proxy=True,
    expect_in_answer=None,
):
    """Run the steps; return the result dict (``ok``, ``msg``, ``steps`` ...). Raises ProbeError
    for input that cannot be used (image_path, ca_path); options are checked by check_options."""
    started = time.monotonic()
    deadline = started + wait_timeout
    url = url.rstrip("/")
    redact = Redactor(api_key)
    image = load_image(image_path) if (chat and image_path) else tiny_png()
    client = Client(context=ssl_context(validate_certs, ca_path), use_proxy=use_proxy)
    api_headers = dict(headers or {})
    if api_key:
        api_headers["Authorization"] = "Bearer %s" % api_key

    result = {
        "ok": False,
        "changed": False,
        "models": [],
        "steps": [],
        **dict.fromkeys(CHAT_DETAILS),
        "attempts": 0,
        "elapsed_s": None,
    }

    def finish(message):
        result["msg"] = redact(message)
        if result["answer"] is not None:
            answer = redact(result["answer"])
            result["answer"] = answer if len(answer) <= ANSWER_LIMIT else answer[: ANSWER_LIMIT - 3] + "..."
        result["elapsed_s"] = round(time.monotonic() - started, 3)
        for step in result["steps"]:
            step["error"] = redact(step["error"])
        return result

    step, served = models_step(
        client,
        url=url,
        model=model,
        headers=api_headers,
        timeout=timeout,
        started=started,
        deadline=deadline,
        interval=interval,
    )
    result["steps"].append(step)
    result["models"], result["attempts"] = served, step["attempts"]
    if not step["ok"]:
        return finish(step["error"])
    said = ["model %r served at %s (%s)" % (model, url, plural(step["attempts"], "attempt"))]

    if chat:
        body = chat_request_body(model=model, prompt=prompt, image=image, max_tokens=max_tokens, stream=stream)
        step, details = chat_step(client, url=url, headers=api_headers, body=body, timeout=timeout)
        result["steps"].append(step)
        result.update(details)
        if step["ok"] and expect_in_answer and expect_in_answer.lower() not in details["answer"].lower():
            step["ok"] = False
            step["error"] = "chat answer does not contain %r: %r" % (expect_in_answer, excerpt(details["answer"]))
        if not step["ok"]:
            return finish(step["error"])
        said.append(_describe_answer(details))

    if webui_url:
        target = webui_url.rstrip("/") + webui_health_path
        step = webui_step(client, url=target, timeout=timeout, started=started, deadline=deadline, interval=interval)
        result["steps"].append(step)
        if not step["ok"]:
            return finish(step["error"])
        said.append("WebUI %s answered %s" % (target, step["status"]))

    result["ok"] = True
    return finish("; ".join(said))
