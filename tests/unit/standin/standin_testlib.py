"""Helpers for the stand-in tests: start the scripts as processes on loopback, talk HTTP to them."""

import base64
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

STANDIN_DIR = Path(__file__).resolve().parents[3] / "tests" / "standin"
VLLM = STANDIN_DIR / "vllm_standin.py"
WEBUI = STANDIN_DIR / "webui_standin.py"
LOOPBACK = "127.0.0.1"


def port_open(port):
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((LOOPBACK, port)) == 0


def png(width, height):
    """A valid (tiny, black) PNG of the given size."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x00" * (3 * width) for _row in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def jpeg(width, height):
    """JPEG markers up to the frame header: enough for a size probe (not a decodable picture)."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xd9"


def data_url(data, mime="image/png"):
    return "data:%s;base64,%s" % (mime, base64.b64encode(data).decode("ascii"))


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)


def request(port, method, path, body=None, *, headers=None, timeout=10):
    """One HTTP request on a fresh connection; JSON-encodes dict/list bodies."""
    headers = dict(headers or {})
    if isinstance(body, dict | list):
        body = json.dumps(body).encode("utf-8")
        headers.setdefault("Content-Type", "application/json")
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return Response(response.status, dict(response.getheaders()), response.read())
    finally:
        conn.close()


def sse_events(body):
    """The `data:` payloads of a server-sent event stream, in order."""
    return [line[len("data: ") :] for line in body.decode("utf-8").split("\n") if line.startswith("data: ")]


class Proc:
    """A stand-in script running as a child process, its output in a log file."""

    def __init__(self, script, args, env, log_path):
        self.log_path = log_path
        self.log_file = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONUNBUFFERED": "1", **env}
        self.popen = subprocess.Popen(
            [sys.executable, str(script), *args], env=full_env, stdout=self.log_file, stderr=subprocess.STDOUT
        )

    @property
    def log(self):
        return Path(self.log_path).read_text(encoding="utf-8", errors="replace")

    def wait_port(self, port, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if port_open(port):
                return
            if self.popen.poll() is not None:
                raise AssertionError(
                    "exited with %s before opening port %d:\n%s" % (self.popen.returncode, port, self.log)
                )
            time.sleep(0.02)
        raise AssertionError("port %d not open after %ss:\n%s" % (port, timeout, self.log))

    def wait_log(self, text, timeout=10):
        """Wait until the process has logged ``text`` (an event to act on, rather than a fixed sleep)."""
        deadline = time.monotonic() + timeout
        while text not in self.log:
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("%r not logged (exit status %s):\n%s" % (text, self.popen.poll(), self.log))
            time.sleep(0.02)

    def signal(self, signum=signal.SIGTERM):
        self.popen.send_signal(signum)

    def wait(self, timeout):
        return self.popen.wait(timeout=timeout)

    def stop(self):
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)
        self.log_file.close()


def websocket_open(sock, host, path, headers=None):
    """Ask for a WebSocket on a connected socket (plain or TLS); the status line of the answer (101 when
    it is open), its headers read and nothing more."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        "GET %s HTTP/1.1" % path,
        "Host: %s" % host,
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: %s" % key,
        "Sec-WebSocket-Version: 13",
    ]
    lines += ["%s: %s" % item for item in (headers or {}).items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            break
        head += chunk
    return head.split(b"\r\n", 1)[0].decode()


def websocket_echo(sock, host, path, text, headers=None):
    """Open a WebSocket on a connected socket (plain or TLS), send one masked text frame, and return
    (status line, the text of the first frame back). Enough of RFC 6455 for the stand-in's /ws echo."""
    status = websocket_open(sock, host, path, headers)
    if " 101 " not in status + " ":
        return status, None
    payload = text.encode()
    mask = os.urandom(4)
    sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    first = sock.recv(2)
    length = first[1] & 0x7F
    if length == 126:
        length = struct.unpack(">H", sock.recv(2))[0]
    data = b""
    while len(data) < length:
        data += sock.recv(length - len(data))
    return status, data.decode()
