"""TEST STAND-IN for the WebUI container. This is NOT the production WebUI.

It gives the lab what the real WebUI gives the collection: a port that answers, a health check
that tells whether the vLLM backend (or its stand-in) serves the configured model, a chat API
that forwards to the backend's OpenAI-compatible API, and session history plus uploads kept in
the shared data directory (NFS in production), so that a failover test can read on instance B
what instance A wrote. Python 3.11 standard library only.

    python3 webui_standin.py [--host H] [--port P]

Environment: GRADIO_SERVER_NAME (host, default 0.0.0.0), GRADIO_SERVER_PORT (default 7860),
OPENAI_API_BASE_URL (default http://127.0.0.1:8000/v1), OPENAI_API_KEY, MODEL_NAME,
DATA_DIR (default /data), STANDIN_INSTANCE_NAME (default: the host name).

Endpoints: GET / (HTML form), GET /healthz, POST /api/chat, GET /api/sessions/<id>,
POST /api/upload (raw image/png or image/jpeg body, at most 10 MiB), GET /ws (WebSocket echo),
GET /api/request-headers (the request's headers as JSON: what a proxy in front passed on; a test aid,
no real WebUI has it).
"""

import argparse
import base64
import binascii
import contextlib
import fcntl
import hashlib
import html
import json
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STANDIN_VERSION = "0.1.0-standin"
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC11B65"  # RFC 6455 section 1.3
MAX_JSON_BYTES = 16 * 1024 * 1024  # a chat request carries its image inline (base64)
HEALTH_TIMEOUT = 3.0
CHAT_TIMEOUT = 300.0
HISTORY_TURNS = 20  # earlier messages sent back to the model as context
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
IMAGE_TYPES = {"image/png": ("png", b"\x89PNG\r\n\x1a\n"), "image/jpeg": ("jpg", b"\xff\xd8")}

_LOG_LOCK = threading.Lock()


def log(message, level="INFO"):
    line = "%s %s [webui_standin] %s\n" % (level, time.strftime("%Y-%m-%d %H:%M:%S"), message)
    with _LOG_LOCK:
        sys.stdout.write(line)
        sys.stdout.flush()


class Config:
    def __init__(self, env):
        self.base_url = env.get("OPENAI_API_BASE_URL", "http://127.0.0.1:8000/v1").rstrip("/")
        self.api_key = env.get("OPENAI_API_KEY", "")
        self.model = env.get("MODEL_NAME", "")
        self.data_dir = env.get("DATA_DIR", "/data")
        self.instance = env.get("STANDIN_INSTANCE_NAME") or socket.gethostname()

    @property
    def sessions_dir(self):
        return os.path.join(self.data_dir, "sessions")

    @property
    def uploads_dir(self):
        return os.path.join(self.data_dir, "uploads")


class ClientError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


# ---------------------------------------------------------------------------------------------
# storage on the shared data directory


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def append_session(config, session_id, records):
    """Append JSON lines under an exclusive lock and fsync them (instances share the directory)."""
    path = os.path.join(config.sessions_dir, session_id + ".jsonl")
    data = "".join(json.dumps(record, sort_keys=True) + "\n" for record in records).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def read_session(config, session_id):
    path = os.path.join(config.sessions_dir, session_id + ".jsonl")
    try:
        handle = open(path, encoding="utf-8")  # locked below, closed by `with`
    except FileNotFoundError:
        return None
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
        try:
            lines = handle.read().splitlines()
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    history = []
    for line in lines:
        with contextlib.suppress(ValueError):  # a torn last line from a crashed writer is skipped
            history.append(json.loads(line))
    return history


def store_upload(config, data, ext):
    """Content-addressed file under uploads/; written to a temp name first, then renamed."""
    digest = hashlib.sha256(data).hexdigest()
    name = "%s.%s" % (digest, ext)
    final = os.path.join(config.uploads_dir, name)
    if not os.path.exists(final):
        fd, tmp = tempfile.mkstemp(dir=config.uploads_dir, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(config.uploads_dir)
    return name, digest


def data_dir_problem(config):
    """None when DATA_DIR takes a real write (with fsync); else the reason."""
    try:
        for path in (config.sessions_dir, config.uploads_dir):
            os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=config.data_dir, prefix=".healthz-")
        try:
            os.write(fd, b"ok")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        return "DATA_DIR %s is not writable: %s" % (config.data_dir, exc)
    return None


def image_kind(data):
    for content_type, (ext, magic) in IMAGE_TYPES.items():
        if data.startswith(magic):
            return content_type, ext
    return None, None


# ---------------------------------------------------------------------------------------------
# backend (vLLM or its stand-in)


def backend_request(config, path, payload=None, timeout=CHAT_TIMEOUT):
    headers = {"Accept": "application/json"}
    if config.api_key:
        headers["Authorization"] = "Bearer " + config.api_key
    data = None
    if payload is not None:
        data = json.dumps(payload).encode("utf-8")
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(config.base_url + path, data=data, headers=headers)
    return urllib.request.urlopen(request, timeout=timeout)


def backend_error(exc):
    """(status for our client, JSON body) for a failed backend call."""
    if isinstance(exc, urllib.error.HTTPError):
        raw = exc.read(4096).decode("utf-8", "replace")
        try:
            detail = json.loads(raw)
            if isinstance(detail.get("error"), dict):
                detail = detail["error"].get("message", raw)
            elif "error" in detail:
                detail = detail["error"]
        except (ValueError, AttributeError):
            detail = raw
        return 502, {"error": "backend error", "backend_status": exc.code, "backend_message": detail}
    reason = getattr(exc, "reason", exc)
    return 502, {"error": "backend unreachable", "backend_status": None, "backend_message": str(reason)}


def check_backend(config):
    """(ok, reason) from GET {base}/models."""
    try:
        with backend_request(config, "/models", timeout=HEALTH_TIMEOUT) as response:
            listing = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            return False, "unauthorized", "backend answered 401: OPENAI_API_KEY is missing or wrong"
        return False, "error", "backend answered HTTP %d" % exc.code
    except (urllib.error.URLError, OSError) as exc:
        return False, "unreachable", "backend %s unreachable: %s" % (config.base_url, getattr(exc, "reason", exc))
    except ValueError:
        return False, "error", "backend /models answer is not JSON"
    names = [card.get("id") for card in listing.get("data", []) if isinstance(card, dict)]
    if config.model not in names:
        return False, "model missing", "model %r is not served by the backend (it serves %s)" % (config.model, names)
    return True, "ok", None


# ---------------------------------------------------------------------------------------------
# HTTP

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Qwen3-VL WebUI (test stand-in)</title></head>
<body>
<h1>Qwen3-VL WebUI &mdash; test stand-in</h1>
<p>This page is served by a test stand-in for the WebUI, not by the production WebUI.
Instance: <code>%(instance)s</code>, model: <code>%(model)s</code>.</p>
<form id="chat">
  <input name="session_id" value="demo" pattern="[A-Za-z0-9_-]{1,64}">
  <input name="message" placeholder="Ask about the image" size="60">
  <input name="image" type="file" accept="image/png,image/jpeg">
  <button type="submit">Send</button>
</form>
<pre id="answer"></pre>
<script>
document.getElementById("chat").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const body = {session_id: form.session_id.value, message: form.message.value};
  const file = form.image.files[0];
  if (file) {
    body.image = await new Promise((resolve) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.readAsDataURL(file);
    });
  }
  const response = await fetch("api/chat", {method: "POST", headers: {"Content-Type": "application/json"},
                                            body: JSON.stringify(body)});
  document.getElementById("answer").textContent = JSON.stringify(await response.json(), null, 2);
});
</script>
</body></html>
"""


class WebuiServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address, config):
        self.config = config
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120

    def version_string(self):
        return "webui-standin/" + STANDIN_VERSION

    def log_request(self, code="-", size="-"):
        log('%s - "%s" %s' % (self.client_address[0], self.requestline, getattr(code, "value", code)))

    def log_message(self, format, *args):
        log("%s - %s" % (self.client_address[0], format % args))

    def send_json(self, status, payload):
        self.send_bytes(status, json.dumps(payload).encode("utf-8"), "application/json")

    def send_bytes(self, status, data, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def read_body(self, limit):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise ClientError(411, "send a Content-Length (chunked bodies are not accepted)")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise ClientError(400, "bad Content-Length") from None
        if length > limit:
            self.close_connection = True  # the body is not read: the connection cannot be reused
            raise ClientError(413, "body of %d bytes is larger than the limit of %d bytes" % (length, limit))
        return self.rfile.read(length) if length > 0 else b""

    def do_GET(self):
        self.route()

    def do_POST(self):
        self.route()

    def route(self):
        path = self.path.split("?", 1)[0]
        routes = {
            ("GET", "/"): self.index,
            ("GET", "/healthz"): self.healthz,
            ("POST", "/api/chat"): self.chat,
            ("POST", "/api/upload"): self.upload,
            ("GET", "/ws"): self.websocket,
            ("GET", "/api/request-headers"): self.request_headers,
        }
        try:
            if self.command == "GET" and path.startswith("/api/sessions/"):
                return self.session(path[len("/api/sessions/") :])
            handler = routes.get((self.command, path))
            if handler is None:
                raise ClientError(404, "no route for %s %s" % (self.command, path))
            return handler()
        except ClientError as exc:
            return self.send_json(exc.status, {"error": exc.message})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return None

    # -- endpoints -----------------------------------------------------------------------------

    def index(self):
        config = self.server.config
        page = PAGE % {"instance": html.escape(config.instance), "model": html.escape(config.model)}
        self.send_bytes(200, page.encode("utf-8"), "text/html; charset=utf-8")

    def healthz(self):
        config = self.server.config
        body = {"status": "ok", "backend": "ok", "model": config.model, "instance": config.instance}
        ok, backend, reason = check_backend(config)
        body["backend"] = backend
        reasons = [reason] if reason else []
        problem = data_dir_problem(config)
        body["data_dir"] = "ok" if problem is None else "not writable"
        if problem:
            reasons.append(problem)
        if not ok or problem:
            body["status"] = "error"
            body["reason"] = "; ".join(reasons)
            return self.send_json(503, body)
        return self.send_json(200, body)

    def session(self, session_id):
        if not SESSION_ID.fullmatch(session_id):
            raise ClientError(400, "session id must match [A-Za-z0-9_-]{1,64}")
        history = read_session(self.server.config, session_id)
        if history is None:
            raise ClientError(404, "no session %s" % session_id)
        return self.send_json(200, history)

    def websocket(self):
        """A WebSocket echo (RFC 6455), as a Gradio WebUI keeps one open per browser tab: one text frame
        in, one back ("<instance>: <text>"), then a close frame. Proves a proxy passes the upgrade."""
        key = self.headers.get("Sec-WebSocket-Key", "")
        if "websocket" not in self.headers.get("Upgrade", "").lower() or not key:
            self.close_connection = True
            raise ClientError(426, "this path speaks WebSocket only (Upgrade: websocket)")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.close_connection = True
        head = self.rfile.read(2)
        if len(head) < 2:
            return
        length = head[1] & 0x7F
        if length == 126:
            length = int.from_bytes(self.rfile.read(2), "big")
        elif length == 127:
            length = int.from_bytes(self.rfile.read(8), "big")
        mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(min(length, 65536))))
        reply = ("%s: %s" % (self.server.config.instance, data.decode("utf-8", "replace"))).encode()
        frame = bytes([0x81, 126]) + len(reply).to_bytes(2, "big") if len(reply) > 125 else bytes([0x81, len(reply)])
        self.wfile.write(frame + reply + bytes([0x88, 0]))
        self.wfile.flush()

    def request_headers(self):
        """The headers as this server got them ({name: [values]}, names in lower case)."""
        seen = {}
        for name, value in self.headers.items():
            seen.setdefault(name.lower(), []).append(value)
        return self.send_json(200, seen)

    def upload(self):
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type not in IMAGE_TYPES:
            self.close_connection = True
            raise ClientError(415, "Content-Type must be image/png or image/jpeg, not %r" % content_type)
        data = self.read_body(MAX_UPLOAD_BYTES)
        if not data:
            raise ClientError(400, "empty upload")
        ext, magic = IMAGE_TYPES[content_type]
        if not data.startswith(magic):
            raise ClientError(400, "the body is not a %s image" % content_type)
        name, digest = store_upload(self.server.config, data, ext)
        log("stored upload %s (%d bytes)" % (name, len(data)))
        return self.send_json(200, {"name": name, "sha256": digest, "size": len(data)})

    def chat(self):
        config = self.server.config
        try:
            request = json.loads(self.read_body(MAX_JSON_BYTES).decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ClientError(400, "the body must be JSON") from None
        if not isinstance(request, dict):
            raise ClientError(400, "the body must be a JSON object")
        session_id = request.get("session_id")
        if not isinstance(session_id, str) or not SESSION_ID.fullmatch(session_id):
            raise ClientError(400, "session_id must match [A-Za-z0-9_-]{1,64}")
        message = request.get("message", "")
        image = request.get("image")
        stream = request.get("stream", False)
        if not isinstance(message, str) or not isinstance(stream, bool):
            raise ClientError(400, "message must be a string and stream a boolean")
        if not message.strip() and not image:
            raise ClientError(400, "send a message, an image or both")
        upload_name = None
        if image is not None:
            upload_name = self.store_inline_image(image)

        history = read_session(config, session_id) or []
        messages = [
            {"role": turn["role"], "content": turn.get("content", "")}
            for turn in history[-HISTORY_TURNS:]
            if isinstance(turn, dict) and turn.get("role") in ("user", "assistant")
        ]
        parts = [{"type": "text", "text": message}] if message else []
        if image is not None:
            parts.append({"type": "image_url", "image_url": {"url": image}})
        messages.append({"role": "user", "content": parts})
        payload = {"model": config.model, "messages": messages, "stream": stream}
        user_record = {"role": "user", "content": message, "image": upload_name, "ts": time.time()}

        try:
            response = backend_request(config, "/chat/completions", payload)
        except (urllib.error.URLError, OSError) as exc:
            status, body = backend_error(exc)
            log("backend call failed: %s" % body)
            return self.send_json(status, body)
        with response:
            if stream:
                answer, finish = self.relay_stream(response)
            else:
                try:
                    completion = json.loads(response.read().decode("utf-8"))
                    answer = completion["choices"][0]["message"]["content"]
                    finish = completion["choices"][0].get("finish_reason")
                except (ValueError, KeyError, IndexError, TypeError):
                    return self.send_json(502, {"error": "backend answer is not a chat completion"})
        assistant_record = {
            "role": "assistant",
            "content": answer,
            "finish_reason": finish,
            "instance": config.instance,
            "ts": time.time(),
        }
        append_session(config, session_id, [user_record, assistant_record])
        if not stream:
            self.send_json(
                200, {"session_id": session_id, "answer": answer, "instance": config.instance, "finish_reason": finish}
            )
        return None

    def store_inline_image(self, image):
        if not isinstance(image, str) or not image.startswith("data:") or ";base64," not in image:
            raise ClientError(400, "image must be a data URL: data:image/png;base64,...")
        try:
            data = base64.b64decode(image.split(",", 1)[1], validate=True)
        except (binascii.Error, ValueError):
            raise ClientError(400, "image data is not valid base64") from None
        if len(data) > MAX_UPLOAD_BYTES:
            raise ClientError(413, "image is larger than %d bytes" % MAX_UPLOAD_BYTES)
        _content_type, ext = image_kind(data)
        if ext is None:
            raise ClientError(415, "image must be PNG or JPEG")
        return store_upload(self.server.config, data, ext)[0]

    def relay_stream(self, response):
        """Copy the backend's server-sent events to our client as they arrive; return the answer."""
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.send_header("X-Standin-Instance", self.server.config.instance)
        self.end_headers()
        pieces = []
        finish = None
        for raw in response:
            self.wfile.write(raw)
            self.wfile.flush()
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            with contextlib.suppress(ValueError, KeyError, IndexError, TypeError):
                choice = json.loads(line[5:])["choices"][0]
                pieces.append(choice["delta"].get("content") or "")
                finish = choice.get("finish_reason") or finish
        return "".join(pieces), finish


def main(argv=None):
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="webui_standin.py", description="Test stand-in for the WebUI (not the production WebUI)."
    )
    parser.add_argument("--host", default=env.get("GRADIO_SERVER_NAME", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=int(env.get("GRADIO_SERVER_PORT", "7860")))
    args = parser.parse_args(argv)
    config = Config(env)
    log("WebUI STAND-IN %s (a test double, not the production WebUI)" % STANDIN_VERSION)
    log("backend %s, model %r, api key %s" % (config.base_url, config.model, "set" if config.api_key else "not set"))
    if not config.model:
        log("MODEL_NAME is empty: /healthz will report the model missing", level="WARNING")
    problem = data_dir_problem(config)
    if problem:
        log(problem + " (/healthz answers 503 until it is)", level="WARNING")
    else:
        log("data dir %s: sessions/ and uploads/ ready" % config.data_dir)

    def on_signal(signum, _frame):
        log("%s: exiting" % signal.Signals(signum).name)
        sys.stdout.flush()
        os._exit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server = WebuiServer((args.host, args.port), config)
    except OSError as exc:
        log("cannot listen on %s:%d: %s" % (args.host, args.port, exc), level="ERROR")
        return 1
    host, port = server.server_address[:2]
    log("instance %s listening on http://%s:%d" % (config.instance, host, port))
    server.serve_forever(poll_interval=0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
