"""nginx_lb's front door against a client who tries to get around it: paths nginx would normalise, a forged
X-Forwarded-For, credentials meant for nginx, and the per-client limits. Tested through the VIP.

A refused request must be answered by nginx itself: its access-log entry names no upstream, and the stand-in
vLLM's journal (it logs every request line) shows no denied path. The limits are the scenario's own
(molecule.yml: nginx_lb_rate_limit, nginx_lb_rate_burst, nginx_lb_conn_limit); the bounds come from them.
"""

import hashlib
import http.client
import json
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_nginx_lb import BACKENDS, KEY, LBS, VIP, _basic, request  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests" / "unit" / "standin"))
from standin_testlib import websocket_open  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from containers import sh  # noqa: E402

ROLE = Path(__file__).resolve().parents[3] / "roles" / "nginx_lb"
LB_ADDRESSES = {"qwen3vl-mol-lb-lb1": "172.29.80.11", "qwen3vl-mol-lb-lb2": "172.29.80.12"}
DENIED = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["_nginx_lb_default_denied_paths"]
LB_VARS = yaml.safe_load((Path(__file__).resolve().parents[1] / "molecule.yml").read_text())["provisioner"][
    "inventory"
]["group_vars"]["lb"]


def variants(path):
    """(raw request path, statuses that mean refused) for one denied path."""
    rest = path[1:]
    first = "%%%02X" % ord(rest[0])
    return [
        (path, {403}),
        (path.upper(), {403}),  # locations are matched case-sensitively unless told
        (path + ";a=b", {403}),  # a ;parameter is part of the path for nginx, not for every backend
        ("/" + first + rest[1:], {403}),  # an encoded letter: nginx decodes it before matching
        ("/" + path, {400}),  # an empty segment
        ("/." + path, {400}),  # a dot segment
        ("/v1/..%2F" + rest, {400}),  # an encoded slash with a dot segment
        ("/%2e%2e" + path, {400}),  # encoded dots
        (path + "/..%2Fv1/models", {400}),  # matches location = /v1/models once normalised (the finding)
        ("/v1/models/..%2F..%2F" + rest, {400}),
    ]


def access_log():
    entries = {}
    for lb in LBS:
        for line in sh(lb, "cat /var/log/nginx/qwen3vl-access.log").stdout.splitlines():
            entry = json.loads(line)
            entries[entry["request_id"]] = entry
    return entries


def vllm_request_lines(since):
    """The request lines each stand-in vLLM logged since ``since`` (epoch seconds)."""
    lines = []
    for gpu in BACKENDS:
        out = sh(gpu, "journalctl -u qwen3vl-standin-vllm --since @%d -o cat" % int(since)).stdout
        lines += [line for line in out.splitlines() if '"GET ' in line or '"POST ' in line]
    return lines


def client_address():
    """This machine's address as the load balancers see it."""
    with socket.create_connection((VIP, 443), timeout=10) as sock:
        return sock.getsockname()[0]


def test_paths_nginx_would_normalise_are_refused_by_nginx_itself():
    started = time.time() - 1
    sent = []
    wrong = []
    for path in DENIED:
        for raw, refused in variants(path):
            rid = "attack-%d" % time.time_ns()
            status, _h, _b = request("GET", raw, headers={"Authorization": "Bearer " + KEY, "X-Request-ID": rid})
            sent.append((rid, raw))
            if status not in refused:
                wrong.append((raw, status, sorted(refused)))
    assert wrong == [], wrong
    logged = access_log()
    unparsed = []
    for rid, raw in sent:
        entry = logged.get(rid)
        if entry is None:
            unparsed.append(raw)
            continue
        assert entry["upstream_addr"] == "", (raw, entry)  # no backend was asked
        assert entry["request_uri"] == raw, entry  # the log keeps what the client sent
    # a path that climbs above the root is refused while nginx reads the request line, before any header:
    # its log line has nginx's own request id and no request_uri
    assert all("%2e%2e" in raw.lower() for raw in unparsed), unparsed
    early = [e for e in logged.values() if e["status"] == 400 and e["request_uri"] == "" and e["upstream_addr"] == ""]
    assert len(early) >= len(unparsed), (len(early), unparsed)
    reached = [line for line in vllm_request_lines(started) if any(p in line for p in DENIED)]
    assert reached == [], reached[:5]


def test_an_allowed_api_path_reaches_vllm_spelled_as_nginx_matched_it():
    started = time.time() - 1
    marker = "probe%d" % time.time_ns()
    for raw in ("/v1/%6dodels?m=" + marker, "/v1/models?m=" + marker):
        status, _h, body = request("GET", raw, headers={"Authorization": "Bearer " + KEY})
        assert status == 200, (raw, body)
        assert json.loads(body)["data"][0]["id"] == "qwen3-vl-test"
    lines = [line for line in vllm_request_lines(started) if marker in line]
    assert len(lines) == 2, lines
    assert all('"GET /v1/models?m=%s HTTP/1.1"' % marker in line for line in lines), lines


def test_a_forged_x_forwarded_for_is_not_passed_on_and_the_log_keeps_the_real_client():
    me = client_address()
    rid = "xff-%d" % time.time_ns()
    forged = "198.51.100.7, 203.0.113.9"
    status, _h, body = request(
        "GET",
        "/api/request-headers",
        headers={"Authorization": _basic(), "X-Forwarded-For": forged, "X-Request-ID": rid},
    )
    assert status == 200, body
    seen = json.loads(body)  # the headers the WebUI got
    assert seen["x-forwarded-for"] == [me], seen
    assert seen["x-real-ip"] == [me], seen
    assert "authorization" not in seen, "basic-auth credentials must stay at the front door: %s" % seen
    entry = access_log()[rid]
    assert (entry["remote_addr"], entry["x_forwarded_for"], entry["remote_user"]) == (me, forged, "alice"), entry


def test_every_https_answer_carries_hsts():
    expected = "max-age=%d" % 31536000  # the role's default (the scenario does not change it)
    for path, status in (("/healthz", 200), ("/metrics", 403), ("/%2e%2e/x", 400), ("/", 401)):
        got, headers, _b = request("GET", path)
        assert got == status, path
        assert headers.get("Strict-Transport-Security") == expected, (path, headers)


def _persistent_gets(count, workers, path, headers):
    """``count`` GETs over ``workers`` kept-alive HTTPS connections; (statuses, seconds from first to last)."""
    statuses = []
    lock = threading.Lock()
    left = [count]

    def worker():
        context = ssl._create_unverified_context()
        conn = None
        while True:
            with lock:
                if left[0] == 0:
                    break
                left[0] -= 1
            try:
                if conn is None:
                    conn = http.client.HTTPSConnection(VIP, 443, timeout=20, context=context)
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                resp.read()
                status = resp.status
                if resp.will_close:
                    conn.close()
                    conn = None
            except OSError as exc:
                status = "error: %s" % exc
                conn = None
            with lock:
                statuses.append(status)
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=worker) for _i in range(workers)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses, time.monotonic() - start


def test_a_client_over_the_rate_limit_gets_429_and_no_more_than_the_limit_passes():
    rate = float(LB_VARS["nginx_lb_rate_limit"].split("r/")[0])  # per second in this scenario
    burst = int(LB_VARS["nginx_lb_rate_burst"])
    count = 6 * burst
    statuses, seconds = _persistent_gets(count, 8, "/v1/models", {"Authorization": "Bearer " + KEY})
    passed = statuses.count(200)
    limited = statuses.count(429)
    print(
        "\nrate limit %g/s, burst %d: %d requests in %.2f s, %d passed, %d got 429"
        % (rate, burst, count, seconds, passed, limited)
    )
    assert passed + limited == count, sorted({s for s in statuses if s not in (200, 429)}, key=str)
    # nginx's leaky bucket: at most the burst beyond the rate over the time the requests took (+1 for the first)
    allowed = burst + rate * seconds + 1
    assert passed <= allowed, (passed, allowed)
    assert limited >= count - allowed, (limited, count, allowed)
    assert limited > 0, "the client was too slow to reach the limit (%d requests in %.2f s)" % (count, seconds)
    assert request("GET", "/healthz")[0] == 200  # nginx's own health is never limited
    time.sleep(burst / rate + 0.5)  # the bucket drains before the next test


def _open_websocket(headers):
    """A WebSocket to the WebUI through the VIP, left open; (socket, status line)."""
    raw = socket.create_connection((VIP, 443), timeout=10)
    sock = ssl._create_unverified_context().wrap_socket(raw, server_hostname="qwen3vl.test")
    return sock, websocket_open(sock, VIP, "/ws", headers)


def test_a_client_over_the_connection_limit_gets_429_until_one_closes():
    limit = int(LB_VARS["nginx_lb_conn_limit"])
    held = []
    try:
        for _i in range(limit):  # a WebSocket stays open: each one is a request nginx is serving
            sock, status = _open_websocket({"Authorization": _basic()})
            held.append(sock)
            assert " 101 " in status, status
        sock, status = _open_websocket({"Authorization": _basic()})
        sock.close()
        assert " 429 " in status, status
        held.pop().close()
        time.sleep(0.5)  # nginx sees the close
        sock, status = _open_websocket({"Authorization": _basic()})
        held.append(sock)
        assert " 101 " in status, status
    finally:
        for sock in held:
            sock.close()


def test_denied_paths_cover_what_vllm_serves_unauthenticated():
    """The list the battery uses is the role's: a denied path removed from it would leave the test silent."""
    assert {"/metrics", "/tokenize", "/invocations", "/pause", "/sleep"} <= set(DENIED)
    assert all(urllib.parse.quote(p) == p for p in DENIED)  # plain paths, so the variants above are what they say


def test_an_unknown_host_is_closed_unanswered_and_only_healthz_answers_it():
    """nginx_lb_refuse_unknown_hosts: a Host that is none of nginx_lb_server_names gets no answer (444), so the
    port-80 redirect can only name one of the site's names."""
    for tls in (True, False):
        with pytest.raises(http.client.RemoteDisconnected):
            request("GET", "/", headers={"Host": "attacker.example"}, tls=tls)
        assert request("GET", "/healthz", headers={"Host": "attacker.example"}, tls=tls)[0] == 200
    status, headers = request("GET", "/chat?x=1", headers={"Host": "qwen3vl.test"}, tls=False)[:2]
    assert (status, headers["Location"]) == (301, "https://qwen3vl.test/chat?x=1")


def test_both_load_balancers_serve_one_certificate():
    """No certificate given: the first load balancer made one and the other serves the same, so the VIP moving
    does not change what clients see."""
    files = {
        lb: sh(lb, "sha256sum /etc/nginx/qwen3vl-tls/server.crt /etc/nginx/qwen3vl-tls/server.key").stdout.split()[::2]
        for lb in LBS
    }
    assert len(set(map(tuple, files.values()))) == 1, files
    served = {lb: ssl.get_server_certificate((address, 443)) for lb, address in LB_ADDRESSES.items()}
    assert len(set(served.values())) == 1, served


AUDIT = "/var/log/qwen3vl/nginx-audit.log"


def audit_entries():
    entries = {}
    for lb in LBS:
        for line in sh(lb, "cat %s" % AUDIT).stdout.splitlines():
            entry = json.loads(line)
            entries[entry["request_id"]] = dict(entry, lb=lb)
    return entries


def test_the_audit_log_names_the_api_key_by_fingerprint_and_never_holds_it():
    run = "%x" % int(time.time() * 1000)
    asked = {
        "key-" + run: ("/v1/models", "Bearer " + KEY),
        "wrong-" + run: ("/v1/models?x=1", "Bearer not-the-key-" + run),
        "user-" + run: ("/", _basic()),
    }
    for request_id, (path, authorization) in asked.items():
        request("GET", path, headers={"Authorization": authorization, "X-Request-ID": request_id})
    entries = audit_entries()
    fingerprint = hashlib.sha256(KEY.encode()).hexdigest()[:12]
    key, wrong, user = (entries["%s-%s" % (kind, run)] for kind in ("key", "wrong", "user"))
    assert (key["api_key"], key["status"], key["method"], key["request_uri"]) == (
        "molecule-client sha256:" + fingerprint,
        200,
        "GET",
        "/v1/models",
    )
    assert key["upstream"] and key["duration"] >= 0 and key["client"] and key["user"] == ""
    assert (wrong["api_key"], wrong["status"], wrong["request_uri"]) == ("unrecognized", 401, "/v1/models?x=1")
    assert (user["user"], user["api_key"], user["status"]) == ("alice", "", 200)
    for lb in LBS:
        text = sh(lb, "cat %s" % AUDIT).stdout
        assert KEY not in text and "not-the-key-" not in text
        assert sh(lb, "stat -c '%%a %%U %%G' %s" % AUDIT).stdout.split() == ["640", "root", "adm"]
        assert sh(lb, "stat -c '%a %U' /etc/nginx/qwen3vl/api-keys.conf").stdout.split() == ["600", "root"]


def test_the_audit_log_is_rotated_and_nginx_writes_the_new_file():
    rotated = []
    for lb in LBS:
        config = sh(lb, "cat /etc/logrotate.d/qwen3vl-nginx-audit").stdout
        assert "rotate 90" in config and "maxage 90" in config  # nginx_lb_audit_log_days' default
        # (an empty log is left alone, notifempty: the load balancer without the VIP may have served nothing)
        had_entries = sh(lb, "test -s %s" % AUDIT, check=False).returncode == 0
        sh(lb, "logrotate --force /etc/logrotate.d/qwen3vl-nginx-audit")
        if had_entries:
            assert sh(lb, "ls %s-*" % AUDIT).stdout.strip(), "no rotated file on " + lb
            rotated.append(lb)
    assert rotated, "neither load balancer had audit entries to rotate"
    request_id = "after-rotation-%x" % int(time.time() * 1000)
    request("GET", "/v1/models", headers={"Authorization": "Bearer " + KEY, "X-Request-ID": request_id})
    for _attempt in range(20):  # nginx reopens on USR1 between requests
        if request_id in audit_entries():
            break
        time.sleep(0.25)
    assert request_id in audit_entries(), "nginx did not write to the new audit log after the rotation"
