"""TEST STAND-IN for `vllm serve`. This is NOT vLLM and runs no model.

It exists so that the roles, modules and drills of qwen3vl.ha can be exercised on machines
without a GPU: it speaks the parts of vLLM's OpenAI-compatible HTTP API that the collection
uses, with the same command line shape, the same error shapes and the same metric names, and
answers every chat request with a deterministic text that proves the request (and its image)
was read. Python 3.11 standard library only.

Command line (the image's ENTRYPOINT is this script, like `vllm serve` in the real image):

    python3 vllm_standin.py MODEL_PATH [--host 0.0.0.0] [--port 8000] [--served-model-name NAME]
        [--max-model-len N] [--gpu-memory-utilization F] [--limit-mm-per-prompt JSON]
        [--api-key KEY] [--shutdown-timeout SECONDS] [--max-num-seqs N]

Accepted but ignored (logged as such): --dtype, --tensor-parallel-size, --trust-remote-code,
--enable-prefix-caching, --disable-log-requests, --uvicorn-log-level, --max-num-batched-tokens,
--seed. Any other flag: exit 2. As in vLLM, `--max_model_len` is the same as `--max-model-len`.

Environment: VLLM_API_KEY (used when --api-key is absent), STANDIN_STARTUP_DELAY (seconds slept
before the port opens, default 0), STANDIN_TOKEN_DELAY (seconds per generated token, default 0.02),
STANDIN_INSTANCE_NAME (default: the host name), sent back in an `X-Standin-Instance` header on every
response, as the WebUI stand-in does, so that a load generator can tell which backend answered.

Token rule (deterministic, documented): prompt tokens = 1 per message + 1 per whitespace-separated
word of text content + 1 per image. One generated word = one token.
"""

import argparse
import base64
import binascii
import hmac
import json
import math
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STANDIN_VERSION = "0.1.0-standin"
MAX_BODY_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_MODEL_LEN = 8192
DEFAULT_MAX_TOKENS = 16
# The answer ends by itself after the image description plus this sentence (finish_reason
# "stop"); a smaller max_tokens cuts it (finish_reason "length").
CLOSING_WORDS = "This answer comes from the test stand-in.".split()

IGNORED_FLAGS = {
    # flag: takes a value?
    "--dtype": True,
    "--tensor-parallel-size": True,
    "--trust-remote-code": False,
    "--enable-prefix-caching": False,
    "--disable-log-requests": False,
    "--uvicorn-log-level": True,
    "--max-num-batched-tokens": True,
    "--seed": True,
}

E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
FINISH_REASONS = ("stop", "length", "abort")

_LOG_LOCK = threading.Lock()


def log(message, level="INFO"):
    """vLLM-like log line on stdout (errors also on stderr), flushed at once for `docker logs`."""
    line = "%s %s [vllm_standin] %s\n" % (level, time.strftime("%m-%d %H:%M:%S"), message)
    with _LOG_LOCK:
        sys.stdout.write(line)
        sys.stdout.flush()
        if level == "ERROR":
            sys.stderr.write(line)
            sys.stderr.flush()


# ---------------------------------------------------------------------------------------------
# command line


class StandinArgumentParser(argparse.ArgumentParser):
    """argparse that, like vLLM's parser, treats `--some_flag` as `--some-flag`."""

    def parse_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        normalised = []
        for arg in args:
            if arg.startswith("--") and "_" in arg.split("=", 1)[0]:
                name, sep, value = arg.partition("=")
                normalised.append(name.replace("_", "-") + sep + value)
            else:
                normalised.append(arg)
        return super().parse_args(normalised, namespace)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not an integer" % text) from None
    if value < 1:
        raise argparse.ArgumentTypeError("%r must be at least 1" % text)
    return value


def _gpu_fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a number" % text) from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError("%r must be in (0, 1]" % text)
    return value


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a number of seconds" % text) from None
    if value < 0 or math.isnan(value) or math.isinf(value):
        raise argparse.ArgumentTypeError("%r must be a finite number >= 0" % text)
    return value


def _mm_limits(text):
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError("not valid JSON (%s): %r" % (exc, text)) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object such as '{\"image\": 2}', got %r" % text)
    for key, count in value.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise argparse.ArgumentTypeError("limit for %r must be an integer >= 0, got %r" % (key, count))
    return value


def build_parser():
    parser = StandinArgumentParser(
        prog="vllm_standin.py",
        description="Test stand-in for `vllm serve` (not vLLM; runs no model).",
        allow_abbrev=False,
    )
    parser.add_argument("model", metavar="MODEL_PATH", help="directory holding the model's config.json")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--served-model-name", default=None)
    parser.add_argument("--max-model-len", type=_positive_int, default=None)
    parser.add_argument("--gpu-memory-utilization", type=_gpu_fraction, default=0.9)
    parser.add_argument("--limit-mm-per-prompt", type=_mm_limits, default=None)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--shutdown-timeout", type=_seconds, default=0.0)
    parser.add_argument("--max-num-seqs", type=_positive_int, default=8)
    parser.add_argument("--allowed-media-domains", nargs="+", default=None, metavar="DOMAIN")
    for flag, takes_value in IGNORED_FLAGS.items():
        if takes_value:
            parser.add_argument(flag, default=None, help="accepted and ignored by the stand-in")
        else:
            parser.add_argument(flag, action="store_true", default=False, help="accepted and ignored by the stand-in")
    return parser


def load_model_config(path):
    """The model directory check vLLM does at start: a directory with a readable config.json."""
    if not os.path.isdir(path):
        return None, "model path %s is not a directory" % path
    config_path = os.path.join(path, "config.json")
    try:
        with open(config_path, encoding="utf-8") as handle:
            config = json.load(handle)
    except FileNotFoundError:
        return None, "model path %s has no config.json (%s)" % (path, config_path)
    except (OSError, ValueError) as exc:
        return None, "cannot read %s: %s" % (config_path, exc)
    if not isinstance(config, dict):
        return None, "%s does not hold a JSON object" % config_path
    return config, None


# ---------------------------------------------------------------------------------------------
# images


class RequestError(Exception):
    """A client error; rendered as vLLM's error object."""

    def __init__(self, message, status=400, param=None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.param = param


def image_size(data):
    """(format, width, height) of PNG or JPEG bytes; RequestError for anything else."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise RequestError("the PNG image has no IHDR header")
        return "PNG", int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    raise RequestError("unsupported image format: the stand-in understands PNG and JPEG only")


_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_NO_LENGTH_MARKERS = {0x01, *range(0xD0, 0xD9)}


def _jpeg_size(data):
    pos = 2
    while pos < len(data):
        if data[pos] != 0xFF:
            break
        while pos < len(data) and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= len(data):
            break
        marker = data[pos]
        pos += 1
        if marker in _NO_LENGTH_MARKERS:
            continue
        if marker in (0xD9, 0xDA) or pos + 2 > len(data):  # end of image / start of scan before a frame
            break
        length = int.from_bytes(data[pos : pos + 2], "big")
        if marker in _SOF_MARKERS:
            if length < 7 or pos + 7 > len(data):
                break
            height = int.from_bytes(data[pos + 3 : pos + 5], "big")
            width = int.from_bytes(data[pos + 5 : pos + 7], "big")
            return "JPEG", width, height
        if length < 2:
            break
        pos += length
    raise RequestError("the JPEG image has no frame header (SOF marker)")


def decode_image_url(url, allowed_domains=None):
    """The image's (width, height) from a data: URL. A remote URL is refused, as vLLM refuses one whose host is
    not in --allowed-media-domains (exact match); one that is allowed is still refused: the stand-in never fetches."""
    if not isinstance(url, str) or not url:
        raise RequestError("image_url.url must be a non-empty string", param="messages")
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("http", "https"):
        host = urllib.parse.urlsplit(url).hostname or ""
        if allowed_domains and host not in allowed_domains:
            raise RequestError(
                "image URL host %r is not in --allowed-media-domains (%s)" % (host, " ".join(allowed_domains)),
                param="messages",
            )
        raise RequestError("the stand-in does not fetch remote images; send a data: URL", param="messages")
    if scheme != "data":
        raise RequestError("unsupported image URL scheme %r" % scheme, param="messages")
    header, sep, payload = url[5:].partition(",")
    if not sep or not header.endswith(";base64"):
        raise RequestError("image data URL must be base64 encoded (data:image/png;base64,...)", param="messages")
    try:
        data = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise RequestError("invalid base64 image data", param="messages") from None
    if not data:
        raise RequestError("empty image data", param="messages")
    return image_size(data)


# ---------------------------------------------------------------------------------------------
# request validation and the deterministic answer


def parse_chat_request(body, state):
    """Validate a chat completion request; returns a dict describing what to generate."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    model = body.get("model")
    if model != state.served_name:
        raise RequestError("The model `%s` does not exist." % (model,), status=404, param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty list", param="messages")
    if body.get("n", 1) != 1:
        raise RequestError("the stand-in only supports n=1", param="n")
    words = 0
    image_urls = []
    last_user_text = ""
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise RequestError("messages[%d] must be an object with a string role" % index, param="messages")
        content = message.get("content")
        texts = []
        if content is None:
            pass
        elif isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text" and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif kind == "image_url":
                    ref = part.get("image_url")
                    image_urls.append(ref.get("url") if isinstance(ref, dict) else ref)
                else:
                    raise RequestError(
                        "messages[%d]: unsupported content part %r (text and image_url only)" % (index, kind),
                        param="messages",
                    )
        else:
            raise RequestError("messages[%d].content must be a string or a list of parts" % index, param="messages")
        text = " ".join(texts)
        words += len(text.split())
        if message["role"] == "user" and text.strip():
            last_user_text = text
    limit = state.mm_limits.get("image", 1)
    if len(image_urls) > limit:
        raise RequestError(
            "At most %d image(s) may be provided in one request (--limit-mm-per-prompt image=%d); got %d."
            % (limit, limit, len(image_urls)),
            param="messages",
        )
    images = [decode_image_url(url, state.allowed_media_domains) for url in image_urls]

    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is None:
        max_tokens = DEFAULT_MAX_TOKENS
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise RequestError("max_tokens must be an integer >= 1", param="max_tokens")
    prompt_tokens = len(messages) + words + len(images)
    if prompt_tokens >= state.max_model_len:
        raise RequestError(
            "This model's maximum context length is %d tokens. However, your request has %d input tokens."
            % (state.max_model_len, prompt_tokens),
            param="messages",
        )
    max_tokens = min(max_tokens, state.max_model_len - prompt_tokens)

    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError("stream must be a boolean", param="stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise RequestError("stream_options must be an object", param="stream_options")
    answer = answer_words(images, last_user_text)
    finish = "stop" if len(answer) <= max_tokens else "length"
    return {
        "stream": stream,
        "include_usage": bool(options.get("include_usage")) and stream,
        "prompt_tokens": prompt_tokens,
        "words": answer[:max_tokens],
        "finish_reason": finish,
    }


def answer_words(images, user_text):
    """The deterministic answer: what was seen, then a closing sentence."""
    if images:
        seen = " and ".join("a %dx%d %s image" % (width, height, fmt) for fmt, width, height in images)
        first = "I see %s." % seen
    else:
        count = len(user_text.split())
        first = "I see no image; your message has %d word%s." % (count, "" if count == 1 else "s")
    return first.split() + CLOSING_WORDS


# ---------------------------------------------------------------------------------------------
# shared state: scheduling, counters, histograms


class Histogram:
    def __init__(self, buckets):
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, value):
        self.total += 1
        self.sum += value
        for index, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[index] += 1  # cumulative by construction


class State:
    def __init__(self, args, served_name, max_model_len, api_key):
        self.served_name = served_name
        self.model_path = args.model
        self.max_model_len = max_model_len
        self.max_num_seqs = args.max_num_seqs
        self.mm_limits = args.limit_mm_per_prompt or {}
        self.allowed_media_domains = args.allowed_media_domains or []
        self.api_key = api_key
        self.token_delay = float(os.environ.get("STANDIN_TOKEN_DELAY", "0.02"))
        self.instance = os.environ.get("STANDIN_INSTANCE_NAME") or socket.gethostname()
        self.created = int(time.time())
        self.lock = threading.Condition()
        self.running = 0
        self.waiting = 0
        self.in_flight = 0  # HTTP requests being handled, whatever the path (drained on SIGTERM)
        self.draining = False
        self.success = dict.fromkeys(FINISH_REASONS, 0)
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.e2e = Histogram(E2E_BUCKETS)
        self.ttft = Histogram(TTFT_BUCKETS)

    def acquire_slot(self):
        """Block until fewer than --max-num-seqs requests generate; counts as waiting meanwhile."""
        with self.lock:
            self.waiting += 1
            try:
                while self.running >= self.max_num_seqs:
                    self.lock.wait()
            finally:
                self.waiting -= 1
            self.running += 1

    def release_slot(self):
        with self.lock:
            self.running -= 1
            self.lock.notify_all()

    def metrics_text(self):
        labels = 'engine="0",model_name="%s"' % _escape_label(self.served_name)
        out = []

        def family(name, kind, help_text):
            out.append("# HELP %s %s" % (name, help_text))
            out.append("# TYPE %s %s" % (name, kind))

        with self.lock:
            family("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.")
            out.append("vllm:num_requests_running{%s} %s" % (labels, float(self.running)))
            family("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.")
            out.append("vllm:num_requests_waiting{%s} %s" % (labels, float(self.waiting)))
            family("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.")
            out.append("vllm:kv_cache_usage_perc{%s} %s" % (labels, min(1.0, self.running / self.max_num_seqs)))
            family("vllm:request_success_total", "counter", "Count of successfully processed requests.")
            for reason in FINISH_REASONS:
                out.append(
                    'vllm:request_success_total{%s,finished_reason="%s"} %s'
                    % (labels, reason, float(self.success[reason]))
                )
            family("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.")
            out.append("vllm:prompt_tokens_total{%s} %s" % (labels, float(self.prompt_tokens)))
            family("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.")
            out.append("vllm:generation_tokens_total{%s} %s" % (labels, float(self.generation_tokens)))
            for name, help_text, hist in (
                ("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", self.e2e),
                ("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", self.ttft),
            ):
                family(name, "histogram", help_text)
                for bound, count in zip(hist.buckets, hist.counts, strict=True):
                    out.append('%s_bucket{%s,le="%s"} %s' % (name, labels, float(bound), float(count)))
                out.append('%s_bucket{%s,le="+Inf"} %s' % (name, labels, float(hist.total)))
                out.append("%s_count{%s} %s" % (name, labels, float(hist.total)))
                out.append("%s_sum{%s} %s" % (name, labels, hist.sum))
        return "\n".join(out) + "\n"


def _escape_label(value):
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# ---------------------------------------------------------------------------------------------
# HTTP


class StandinServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address, state):
        self.state = state
        host = address[0]
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120  # idle keep-alive connections do not hold a thread forever

    def version_string(self):
        return "vllm-standin/" + STANDIN_VERSION

    # -- plumbing ------------------------------------------------------------------------------

    def log_request(self, code="-", size="-"):
        code = getattr(code, "value", code)
        log('%s - "%s" %s' % (self.client_address[0], self.requestline, code))

    def log_message(self, format, *args):
        log("%s - %s" % (self.client_address[0], format % args))

    def send_body(self, status, body, content_type="application/json", extra_headers=None):
        data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Standin-Instance", self.server.state.instance)
        for key, value in (extra_headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_error_object(self, exc):
        kind = {404: "NotFoundError"}.get(exc.status, "BadRequestError")
        self.send_body(
            exc.status,
            {"error": {"message": exc.message, "type": kind, "param": exc.param, "code": exc.status}},
        )

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            size = 0
            while True:
                line = self.rfile.readline(1024)
                length = int(line.split(b";")[0].strip() or b"0", 16)
                if length == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                size += length
                if size > MAX_BODY_BYTES:
                    raise RequestError("request body too large", status=413)
                chunks.append(self.rfile.read(length))
                self.rfile.readline(1024)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise RequestError("request body too large", status=413)
        return self.rfile.read(length) if length > 0 else b""

    def authorised(self):
        key = self.server.state.api_key
        if not key:
            return True
        given = self.headers.get("Authorization", "").encode("utf-8", "replace")
        return hmac.compare_digest(given, ("Bearer " + key).encode("utf-8"))

    # -- dispatch ------------------------------------------------------------------------------

    def do_GET(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def do_HEAD(self):
        self.dispatch()

    def do_PUT(self):
        self.dispatch()

    def do_DELETE(self):
        self.dispatch()

    def dispatch(self):
        state = self.server.state
        with state.lock:
            state.in_flight += 1
            draining = state.draining
        try:
            self._dispatch(draining)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            with state.lock:
                state.in_flight -= 1
                state.lock.notify_all()

    def _dispatch(self, draining):
        path = self.path.split("?", 1)[0]
        try:
            body = self.read_body()
        except (RequestError, ValueError) as exc:
            self.close_connection = True
            status = getattr(exc, "status", 400)
            return self.send_error_object(RequestError(getattr(exc, "message", "malformed request body"), status))
        if draining:
            self.close_connection = True
            return self.send_body(503, {"error": "the server is shutting down"})
        if path.startswith("/v1") and not self.authorised():
            return self.send_body(401, {"error": "Unauthorized"})
        routes = {
            "/health": {"GET": self.health, "HEAD": self.health},
            "/ping": {"GET": self.health, "POST": self.health},
            "/version": {"GET": self.version},
            "/metrics": {"GET": self.metrics},
            "/v1/models": {"GET": self.models},
            "/v1/chat/completions": {"POST": self.chat},
        }
        methods = routes.get(path)
        if methods is None:
            return self.send_body(404, {"detail": "Not Found"})
        handler = methods.get(self.command)
        if handler is None:
            return self.send_body(405, {"detail": "Method Not Allowed"}, extra_headers={"Allow": ", ".join(methods)})
        return handler(body)

    # -- endpoints -----------------------------------------------------------------------------

    def health(self, _body):
        self.send_body(200, b"", content_type="text/plain")

    def version(self, _body):
        self.send_body(200, {"version": STANDIN_VERSION})

    def metrics(self, _body):
        text = self.server.state.metrics_text().encode("utf-8")
        self.send_body(200, text, content_type="text/plain; version=0.0.4; charset=utf-8")

    def models(self, _body):
        state = self.server.state
        card = {
            "id": state.served_name,
            "object": "model",
            "created": state.created,
            "owned_by": "vllm",
            "root": state.model_path,
            "parent": None,
            "max_model_len": state.max_model_len,
        }
        self.send_body(200, {"object": "list", "data": [card]})

    def chat(self, body):
        state = self.server.state
        try:
            try:
                request = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                raise RequestError("the request body is not valid JSON") from None
            plan = parse_chat_request(request, state)
        except RequestError as exc:
            return self.send_error_object(exc)

        started = time.monotonic()
        completion_id = "chatcmpl-" + uuid.uuid4().hex
        created = int(time.time())
        state.acquire_slot()
        finish = "abort"
        first_token_at = None
        generated = 0
        try:
            with state.lock:
                state.prompt_tokens += plan["prompt_tokens"]
            if plan["stream"]:
                self._start_stream()
                self._sse(completion_id, created, {"role": "assistant", "content": ""}, None)
            for index, word in enumerate(plan["words"]):
                if state.token_delay > 0:
                    time.sleep(state.token_delay)
                with state.lock:
                    state.generation_tokens += 1
                    if first_token_at is None:
                        first_token_at = time.monotonic()
                        state.ttft.observe(first_token_at - started)
                generated += 1
                if plan["stream"]:
                    self._sse(completion_id, created, {"content": word if index == 0 else " " + word}, None)
            finish = plan["finish_reason"]
            usage = {
                "prompt_tokens": plan["prompt_tokens"],
                "completion_tokens": generated,
                "total_tokens": plan["prompt_tokens"] + generated,
            }
            if plan["stream"]:
                self._sse(completion_id, created, {}, finish)
                if plan["include_usage"]:
                    self._sse_data({**self._chunk(completion_id, created), "choices": [], "usage": usage})
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
            else:
                self.send_body(
                    200,
                    {
                        "id": completion_id,
                        "object": "chat.completion",
                        "created": created,
                        "model": state.served_name,
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": " ".join(plan["words"])},
                                "logprobs": None,
                                "finish_reason": finish,
                            }
                        ],
                        "usage": usage,
                    },
                )
        finally:
            state.release_slot()
            with state.lock:
                state.success[finish] += 1
                if finish != "abort":
                    state.e2e.observe(time.monotonic() - started)
        return None

    # -- server-sent events --------------------------------------------------------------------

    def _start_stream(self):
        self.close_connection = True  # the stream ends when the connection closes
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.send_header("X-Standin-Instance", self.server.state.instance)
        self.end_headers()

    def _chunk(self, completion_id, created):
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": self.server.state.served_name,
        }

    def _sse(self, completion_id, created, delta, finish):
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        self._sse_data({**self._chunk(completion_id, created), "choices": [choice]})

    def _sse_data(self, payload):
        self.wfile.write(b"data: " + json.dumps(payload).encode("utf-8") + b"\n\n")
        self.wfile.flush()


# ---------------------------------------------------------------------------------------------
# main: model check, (delayed) bind, serve, signals


def main(argv=None):
    args = build_parser().parse_args(argv)
    log("vLLM STAND-IN %s (a test double, not vLLM; no model is run)" % STANDIN_VERSION)
    for flag, takes_value in IGNORED_FLAGS.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if (value is not None) if takes_value else value:
            log("%s%s is ignored by the stand-in" % (flag, "" if value is True else " " + str(value)))

    config, error = load_model_config(args.model)
    if error:
        log("cannot load the model: %s" % error, level="ERROR")
        return 1
    served_name = args.served_model_name or args.model
    max_model_len = args.max_model_len or config.get("max_position_embeddings") or DEFAULT_MAX_MODEL_LEN
    if isinstance(max_model_len, bool) or not isinstance(max_model_len, int) or max_model_len < 1:
        log("config.json max_position_embeddings is not a positive integer: %r" % (max_model_len,), level="ERROR")
        return 1
    api_key = args.api_key or os.environ.get("VLLM_API_KEY") or None
    state = State(args, served_name, max_model_len, api_key)
    if state.allowed_media_domains:
        log("image URLs only from: %s" % " ".join(state.allowed_media_domains))

    stop = threading.Event()
    signals = []

    def on_signal(signum, _frame):
        signals.append(signum)
        if len(signals) > 1:
            log("second %s: exiting now" % signal.Signals(signum).name, level="WARNING")
            os._exit(0)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    delay = float(os.environ.get("STANDIN_STARTUP_DELAY", "0") or 0)
    if delay > 0:
        log("loading model weights from %s (stand-in: sleeping %.1fs, port closed meanwhile)" % (args.model, delay))
        if stop.wait(delay):
            log("%s during model load: exiting" % signal.Signals(signals[0]).name)
            return 0
    log(
        "model %s served as %r, max_model_len=%d, max_num_seqs=%d, limit_mm_per_prompt=%s, api key %s"
        % (
            args.model,
            served_name,
            max_model_len,
            args.max_num_seqs,
            json.dumps(state.mm_limits or {"image": 1}),
            "set" if api_key else "not set",
        )
    )
    try:
        server = StandinServer((args.host, args.port), state)
    except OSError as exc:
        log("cannot listen on %s:%d: %s" % (args.host, args.port, exc), level="ERROR")
        return 1
    host, port = server.server_address[:2]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    log("Started server process [%d]" % os.getpid())
    log("Starting vLLM API server (stand-in) on http://%s:%d" % (host, port))
    log("Application startup complete.")

    while not stop.wait(1.0):
        pass
    name = signal.Signals(signals[0]).name
    timeout = args.shutdown_timeout
    with state.lock:
        state.draining = True
        in_flight = state.in_flight
    server.shutdown()  # stop accepting: new connections are refused from here on
    server.server_close()
    if timeout <= 0:
        log("%s: shutting down now (--shutdown-timeout 0); %d request(s) in flight aborted" % (name, in_flight))
        return 0
    log(
        "%s: draining: refusing new connections, waiting up to %ss for %d in-flight request(s)"
        % (name, timeout, in_flight)
    )
    deadline = time.monotonic() + timeout
    with state.lock:
        while state.in_flight > 0 and time.monotonic() < deadline:
            state.lock.wait(min(0.1, max(0.0, deadline - time.monotonic())))
        left = state.in_flight
    if left:
        log("drain timeout after %ss: aborting %d request(s) still in flight" % (timeout, left), level="WARNING")
    else:
        log("drain complete: all in-flight requests finished")
    log("Application shutdown complete.")
    return 0


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    code = main()
    sys.stdout.flush()
    os._exit(code)  # do not wait for request threads (aborted on shutdown, as in vLLM)
