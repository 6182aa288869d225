"""nginx_lb: the front door in front of two stand-in backends, tested through the VIP.

Traffic goes only to the containers this scenario created (the VIP 172.29.80.100 and the hosts on
172.29.80.0/24). Playbook runs use the scenario's converge.yml with extra variables.
"""

import base64
import functools
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

# the WebSocket client the stand-in's own unit tests use
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests" / "unit" / "standin"))
from standin_testlib import websocket_echo  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from containers import sh  # noqa: E402
from playbook_run import recap_changed, run_converge  # noqa: E402

converge = functools.partial(run_converge, Path(__file__).resolve().parents[1])
# the tests that change only nginx_lb's settings run only that role (--tags; converge.yml adds keepalived)
converge_lb = functools.partial(converge, tags="nginx_lb")

SCENARIO = Path(__file__).resolve().parents[1]
VIP = os.environ.get("QWEN3VL_TEST_FRONT", "172.29.80.100")
LBS = ["qwen3vl-mol-lb-lb1", "qwen3vl-mol-lb-lb2"]
BACKENDS = {"qwen3vl-mol-lb-gpu1": "172.29.80.21", "qwen3vl-mol-lb-gpu2": "172.29.80.22"}
KEY = "molecule-only-key-7d2e"
USER = ("alice", "molecule-only-password")
CONF = "/etc/nginx/nginx.conf"


def _basic(user=USER):
    return "Basic " + base64.b64encode(("%s:%s" % user).encode()).decode()


def request(method, path, body=None, headers=None, *, tls=True, host=VIP, timeout=20):
    """One request; returns (status, headers dict, body bytes)."""
    if tls:
        conn = http.client.HTTPSConnection(host, 443, timeout=timeout, context=ssl._create_unverified_context())
    else:
        conn = http.client.HTTPConnection(host, 80, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def webui_get(path="/", **kw):
    return request("GET", path, headers={"Authorization": _basic()}, **kw)


def answered_by(body):
    """Which backend instance served a WebUI page (the stand-in prints its instance name)."""
    text = body.decode(errors="replace")
    for name in BACKENDS:
        if "%s-webui-0" % name in text:  # STANDIN_INSTANCE_NAME, set by prepare.yml
            return name
    return None


def test_requests_through_the_vip_reach_both_backends():
    seen = []
    for _attempt in range(12):
        status, _headers, body = webui_get()
        assert status == 200
        seen.append(answered_by(body))
    assert set(seen) == set(BACKENDS), seen


def test_http_redirects_to_https_and_nginx_answers_healthz_itself():
    status, headers, _body = request("GET", "/some/page?x=1", tls=False)
    assert status == 301
    assert headers["Location"] == "https://%s/some/page?x=1" % VIP
    for tls in (False, True):
        status, _headers, body = request("GET", "/healthz", tls=tls)
        assert (status, body) == (200, b"ok\n")


def test_wrong_basic_auth_gets_401_and_the_right_one_200():
    assert request("GET", "/")[0] == 401
    assert request("GET", "/", headers={"Authorization": _basic(("alice", "wrong"))})[0] == 401
    assert request("GET", "/", headers={"Authorization": _basic(("mallory", "molecule-only-password"))})[0] == 401
    assert webui_get()[0] == 200


@pytest.mark.parametrize(
    "path",
    [
        "/metrics",
        "/pause",
        "/resume",
        "/sleep",
        "/invocations",
        "/collective_rpc",
        "/tokenize",
        "/scale_elastic_ep",
        "/start_profile",
        "/v1/load_lora_adapter",
        "/v1/embeddings",
        "/v1/anything",
        "/metrics/",
    ],
)
def test_operational_paths_are_refused_at_the_front_door(path):
    status, _headers, _body = request(
        "POST" if path != "/metrics" else "GET", path, body=b"{}", headers={"Authorization": "Bearer " + KEY}
    )
    assert status == 403, path


def test_the_refused_paths_do_exist_on_the_backends():
    """So the 403 above is nginx's doing: the backend itself answers /metrics."""
    conn = http.client.HTTPConnection(BACKENDS["qwen3vl-mol-lb-gpu1"], 8000, timeout=10)
    conn.request("GET", "/metrics")
    resp = conn.getresponse()
    assert resp.status == 200
    assert b"vllm:" in resp.read()


def test_the_allowed_api_paths_reach_vllm_with_its_key():
    status, _h, body = request("GET", "/v1/models", headers={"Authorization": "Bearer " + KEY})
    assert status == 200
    assert json.loads(body)["data"][0]["id"] == "qwen3-vl-test"
    assert request("GET", "/v1/models", headers={"Authorization": "Bearer wrong"})[0] == 401


def test_an_sse_stream_passes_through_unbuffered():
    body = json.dumps(
        {"model": "qwen3-vl-test", "stream": True, "messages": [{"role": "user", "content": "describe nothing"}]}
    )
    conn = http.client.HTTPSConnection(VIP, 443, timeout=30, context=ssl._create_unverified_context())
    t0 = time.monotonic()
    conn.request(
        "POST",
        "/v1/chat/completions",
        body=body,
        headers={"Authorization": "Bearer " + KEY, "Content-Type": "application/json"},
    )
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("Content-Type", "").startswith("text/event-stream")
    first = None
    events = 0
    while True:
        line = resp.fp.readline()
        if not line:
            break
        if line.startswith(b"data: {"):
            events += 1
            if first is None:
                first = time.monotonic() - t0
        if line.startswith(b"data: [DONE]"):
            break
    total = time.monotonic() - t0
    conn.close()
    print("SSE through the VIP: first chunk after %.3f s, whole stream %.3f s, %d events" % (first, total, events))
    assert events >= 10
    # the stand-in writes one token every 0.1 s: a buffering proxy would hold everything until the end
    assert total > 1.0
    assert first < total / 3


def test_a_websocket_is_upgraded_through_the_vip():
    """The WebUI's WebSocket (Gradio keeps one per tab): the upgrade must pass nginx, over TLS."""
    context = ssl._create_unverified_context()
    with socket.create_connection((VIP, 443), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="qwen3vl.test") as sock:
            status, text = websocket_echo(sock, VIP, "/ws", "hello", {"Authorization": _basic()})
    assert status.startswith("HTTP/1.1 101"), status
    assert text.split(": ", 1)[1] == "hello"
    assert text.split(": ", 1)[0] in {"%s-webui-0" % h for h in BACKENDS}


def test_an_oversize_upload_gets_413_and_a_normal_one_passes():
    png = b"\x89PNG\r\n\x1a\n"
    headers = {"Authorization": _basic(), "Content-Type": "image/png"}
    status, _h, _b = request("POST", "/api/upload", body=png + b"\0" * (11 * 1024 * 1024), headers=headers)
    assert status == 413
    status, _h, body = request("POST", "/api/upload", body=png + b"\0" * (1024 * 1024), headers=headers)
    assert status == 200, body
    assert json.loads(body)["size"] == len(png) + 1024 * 1024


def test_request_id_is_passed_through_and_logged_as_json_with_the_upstream():
    rid = "molecule-%d" % time.time_ns()
    status, headers, _body = request("GET", "/", headers={"Authorization": _basic(), "X-Request-ID": rid})
    assert status == 200
    assert headers["X-Request-ID"] == rid
    # a made-up id is replaced by nginx's own (32 hex digits)
    _s, headers, _body = request("GET", "/", headers={"Authorization": _basic(), "X-Request-ID": 'bad id"{'})
    assert len(headers["X-Request-ID"]) == 32
    assert all(c in "0123456789abcdef" for c in headers["X-Request-ID"])
    lines = []
    for lb in LBS:
        lines += [json.loads(line) for line in sh(lb, "cat /var/log/nginx/qwen3vl-access.log").stdout.splitlines()]
    mine = [entry for entry in lines if entry["request_id"] == rid]
    assert len(mine) == 1, mine
    assert mine[0]["upstream_addr"] in ["%s:7860" % a for a in BACKENDS.values()]
    assert float(mine[0]["upstream_response_time"]) >= 0
    assert mine[0]["status"] == 200


def test_status_endpoint_is_local_only():
    for lb in LBS:
        out = sh(
            lb,
            "python3 -c 'import urllib.request as u; print(u.urlopen(\"http://127.0.0.1:8081/nginx_status\").read().decode())'",
        )
        assert "Active connections" in out.stdout
    # not on the public listeners
    assert request("GET", "/nginx_status", headers={"Authorization": _basic()})[0] in (401, 403, 404)
    status, _h, body = webui_get("/nginx_status")
    assert b"Active connections" not in body
    assert status != 200 or answered_by(body) is None


def test_each_worker_may_open_as_many_files_as_it_has_connections():
    """worker_connections counts client and upstream connections, each a file descriptor: a worker left at
    the service's limit (1024) refuses connections long before that, and nginx warns about it."""
    conf = sh(LBS[0], "cat " + CONF).stdout
    connections = int(re.search(r"^\s*worker_connections\s+(\d+);", conf, re.M).group(1))
    for lb in LBS:
        processes = (line.split(None, 1) for line in sh(lb, "ps -eo pid=,args=").stdout.splitlines())
        workers = [pid for pid, args in processes if args.startswith("nginx: worker process")]
        assert workers, lb
        for pid in workers:
            limits = sh(lb, "cat /proc/%s/limits" % pid).stdout
            soft = int(next(line for line in limits.splitlines() if line.startswith("Max open files")).split()[3])
            assert soft >= connections, (lb, pid, soft, connections)
        log = sh(lb, "cat /var/log/nginx/error.log").stdout
        assert "exceed open file resource limit" not in log, log[-2000:]


def _stream_while(action, count=60, interval=0.05):
    """Send `count` sequential requests through the VIP while `action` runs; return the outcomes."""
    outcomes = []

    def client():
        for _attempt in range(count):
            t0 = time.monotonic()
            try:
                status, _h, body = webui_get(timeout=15)
                outcomes.append((status, answered_by(body), time.monotonic() - t0))
            except OSError as exc:
                outcomes.append(("error: %s" % exc, None, time.monotonic() - t0))
            time.sleep(interval)

    thread = threading.Thread(target=client)
    thread.start()
    time.sleep(0.5)
    action()
    thread.join()
    return outcomes


def test_a_stopped_backend_is_ejected_without_failed_requests():
    """GET / is idempotent: even a request in flight on the stopped backend is retried elsewhere."""
    gpu1 = "qwen3vl-mol-lb-gpu1"
    try:
        outcomes = _stream_while(lambda: sh(gpu1, "systemctl stop qwen3vl-standin-webui"))
        failed = [o for o in outcomes if o[0] != 200]
        after = [o[1] for o in outcomes[-20:]]
        print(
            "backend stopped: %d requests, %d failed, slowest %.3f s"
            % (len(outcomes), len(failed), max(o[2] for o in outcomes))
        )
        assert failed == []
        assert set(after) == {"qwen3vl-mol-lb-gpu2"}
    finally:
        sh(gpu1, "systemctl start qwen3vl-standin-webui")
    # it comes back into rotation after fail_timeout
    deadline = time.monotonic() + 30
    seen = set()
    while time.monotonic() < deadline and seen != set(BACKENDS):
        seen.add(answered_by(webui_get()[2]))
        time.sleep(0.2)
    assert seen == set(BACKENDS)


def test_a_powered_off_backend_costs_a_connect_timeout_not_a_failure():
    """docker kill = power loss: nothing refuses, nginx gives up after proxy_connect_timeout (2 s)."""
    gpu2 = "qwen3vl-mol-lb-gpu2"
    try:
        outcomes = _stream_while(
            lambda: subprocess.run(["docker", "kill", gpu2], check=True, capture_output=True), count=40
        )
        failed = [o for o in outcomes if o[0] != 200]
        slowest = max(o[2] for o in outcomes)
        print("backend host killed: %d requests, %d failed, slowest %.3f s" % (len(outcomes), len(failed), slowest))
        assert failed == []
        assert slowest < 2.0 + 1.5  # proxy_connect_timeout + margin, not 60 s
        assert {o[1] for o in outcomes[-10:]} == {"qwen3vl-mol-lb-gpu1"}
    finally:
        subprocess.run(["docker", "start", gpu2], check=True, capture_output=True)
        for _attempt in range(60):
            if sh(gpu2, "systemctl is-active qwen3vl-standin-webui", check=False).stdout.strip() == "active":
                break
            time.sleep(1)


def test_a_value_nginx_rejects_never_lands_and_nginx_keeps_serving():
    before = {lb: sh(lb, "md5sum %s" % CONF).stdout for lb in LBS}
    rc, text = converge_lb({"nginx_lb_tls_protocols": ["TLSv9"]}, expect_rc=2)
    assert "nginx -t" in text or "failed to validate" in text, text[-3000:]
    for lb in LBS:
        assert sh(lb, "md5sum %s" % CONF).stdout == before[lb]
        assert sh(lb, "systemctl is-active nginx").stdout.strip() == "active"
    assert webui_get()[0] == 200


@pytest.mark.parametrize(
    ("extra", "variable"),
    [
        (
            {"nginx_lb_tls_certificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"},
            "nginx_lb_tls_private_key: empty",
        ),
        ({"nginx_lb_api_paths": ["/metrics"]}, "nginx_lb_api_paths: /metrics also in nginx_lb_denied_paths"),
        ({"nginx_lb_proxy_connect_timeout": "two seconds"}, "nginx_lb_proxy_connect_timeout"),
        ({"nginx_lb_basic_auth_users": [{"name": "bob"}]}, "nginx_lb_basic_auth_users[0]"),
        # auth is on by default: no users without saying nginx_lb_webui_auth: none
        ({"nginx_lb_basic_auth_users": []}, "nginx_lb_basic_auth_users: empty, and nginx_lb_webui_auth is basic"),
    ],
)
def test_bad_input_fails_in_preflight_naming_the_variable_and_changes_nothing(extra, variable):
    before = {lb: sh(lb, "md5sum %s" % CONF).stdout for lb in LBS}
    rc, text = converge_lb(extra, expect_rc=2)
    assert variable in text, text[-3000:]
    assert recap_changed(text) == 0
    for lb in LBS:
        assert sh(lb, "md5sum %s" % CONF).stdout == before[lb]


def test_a_removed_user_loses_access_and_the_converge_reloads():
    rc, text = converge_lb({"nginx_lb_basic_auth_users": [{"name": "bob", "password": "molecule-only-2"}]})
    try:
        assert request("GET", "/", headers={"Authorization": _basic()})[0] == 401
        assert request("GET", "/", headers={"Authorization": _basic(("bob", "molecule-only-2"))})[0] == 200
        for lb in LBS:
            users = sh(lb, "cut -d: -f1 /etc/nginx/qwen3vl.htpasswd").stdout.split()
            assert users == ["bob"]
    finally:
        converge_lb()
    assert webui_get()[0] == 200
    rc, text = converge()
    assert recap_changed(text) == 0
