"""Concurrent chat load through the front door, for the failover tests (molecule nginx_lb, the lab).

Each worker thread sends one kind of request again and again: a vLLM API chat completion or a WebUI
chat (``POST /api/chat`` with the tiny PNG). Every request is recorded as (kind, start, end, ok, detail)
with wall-clock times, so a test can split failures at a fault into requests in flight at that moment
and requests started after it.

Only test networks are accepted as targets: loopback and the Docker networks the tests create
(172.29.0.0/16). Anything else is refused before a byte is sent.
"""

import base64
import http.client
import ipaddress
import json
import ssl
import threading
import time
from pathlib import Path

ALLOWED = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"), ipaddress.ip_network("172.29.0.0/16"))
PNG = (Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "images" / "tiny.png").read_bytes()


def check_target(address):
    """Refuse a target outside loopback and the tests' own networks."""
    ip = ipaddress.ip_address(address)
    if not any(ip in net for net in ALLOWED):
        raise ValueError("load: %s is not loopback or a test network (%s)" % (address, ", ".join(map(str, ALLOWED))))
    return address


def api_chat(address, key, model):
    body = json.dumps(
        {"model": model, "max_tokens": 3, "messages": [{"role": "user", "content": "Say three words."}]}
    ).encode()
    headers = {"Content-Type": "application/json", "Authorization": "Bearer " + key}
    return "POST", "/v1/chat/completions", body, headers


def webui_chat(address, basic_auth=None):
    body = json.dumps(
        {
            "session_id": "load-%d" % threading.get_ident(),
            "message": "What is this?",
            "image": "data:image/png;base64," + base64.b64encode(PNG).decode(),
        }
    ).encode()
    headers = {"Content-Type": "application/json"}
    if basic_auth:
        headers["Authorization"] = "Basic " + base64.b64encode(("%s:%s" % basic_auth).encode()).decode()
    return "POST", "/api/chat", body, headers


class Load:
    """``Load(address, [("api", request_tuple), ("webui", request_tuple)], threads_per_kind)``."""

    def __init__(self, address, kinds, threads_per_kind=4, timeout=20):
        self.address = check_target(address)
        self.kinds = kinds
        self.threads_per_kind = threads_per_kind
        self.timeout = timeout
        self.records = []
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.threads = []

    def _worker(self, kind, request):
        method, path, body, headers = request
        context = ssl._create_unverified_context()  # the test front doors have self-signed certificates
        while not self.stop_event.is_set():
            start = time.time()
            ok, detail = False, ""
            try:
                conn = http.client.HTTPSConnection(self.address, 443, timeout=self.timeout, context=context)
                try:
                    conn.request(method, path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    ok = resp.status == 200
                    detail = "HTTP %d" % resp.status if not ok else ""
                    if ok and not data:
                        ok, detail = False, "empty body"
                finally:
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                detail = "%s: %s" % (type(exc).__name__, exc)
            with self.lock:
                self.records.append((kind, start, time.time(), ok, detail))
            if not ok:
                time.sleep(0.05)  # a failing front door is not hammered in a tight loop

    def __enter__(self):
        for kind, request in self.kinds:
            for _i in range(self.threads_per_kind):
                thread = threading.Thread(target=self._worker, args=(kind, request), daemon=True)
                thread.start()
                self.threads.append(thread)
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        for thread in self.threads:
            thread.join(self.timeout + 5)

    def split(self, fault, grace=1.0, fault_end=None):
        """Failures at a fault: {"in_flight": at it, "early": started in the grace seconds after it,
        "after": started later}, each a list of records, and "all": every request.

        A fault that is known only to lie between two instants (a ``docker kill`` takes effect somewhere
        between the call and its return) is given as ``fault`` .. ``fault_end``: a request in flight at any
        moment of that window counts as in flight at the fault, and the grace runs from its end."""
        end = fault if fault_end is None else fault_end
        with self.lock:
            records = list(self.records)
        failed = [r for r in records if not r[3]]
        return {
            "in_flight": [r for r in failed if r[1] <= end and r[2] >= fault],
            "early": [r for r in failed if end < r[1] < end + grace],
            "after": [r for r in failed if r[1] >= end + grace],
            "all": records,
        }
