# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""TEST STAND-IN for a notification receiver (a chat bridge behind an Alertmanager webhook).

Appends every POSTed notification to a JSON-lines file, one object per notification:
{"received": <unix time>, "status": "firing"|"resolved", "alerts": [{"status", "labels", "startsAt", "endsAt"}]}.
GET / answers "ok" (a readiness check). Listens on 127.0.0.1 by default.

    alert_recorder.py --port 9095 --out /var/log/qwen3vl-alerts.jsonl [--bind ADDRESS]
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_LOCK = threading.Lock()


def record(notification, received):
    """The line kept for one Alertmanager webhook notification."""
    return {
        "received": received,
        "status": notification.get("status"),
        "receiver": notification.get("receiver"),
        "alerts": [
            {
                "status": alert.get("status"),
                "labels": alert.get("labels") or {},
                "startsAt": alert.get("startsAt"),
                "endsAt": alert.get("endsAt"),
            }
            for alert in notification.get("alerts") or []
        ],
    }


class Handler(BaseHTTPRequestHandler):
    out = "/dev/null"

    def log_message(self, fmt, *args):  # the journal gets one line per notification, not per request
        return

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def do_POST(self):
        received = time.time()
        length = int(self.headers.get("Content-Length") or 0)
        try:
            notification = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self.send_response(400)
            self.end_headers()
            return
        line = json.dumps(record(notification, received), sort_keys=True)
        with _LOCK, open(self.out, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
        print("notification %s" % line, flush=True)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9095)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    Handler.out = args.out
    ThreadingHTTPServer((args.bind, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
