"""nginx_lb's active health checks (qwen3vl-upstream-check), measured through the VIP with load running.

For each fault on backend gpu1 (vLLM killed, vLLM hung with SIGSTOP, WebUI killed), with API chat
completions and WebUI chats running through the VIP:
- the affected servers leave rotation on both load balancers within the bound the checker's settings
  give (interval + fall x max(interval, timeout)), plus one interval for scheduling and the reload, plus
  the duration of the docker exec that causes the fault (it lands somewhere inside it);
- no request started 1 s or more after the fault fails (requests in flight at the fault are counted
  and printed: a killed process loses what it was serving);
- after recovery they are back in rotation on both load balancers within 5 s.
QWEN3VL_FAILOVER_RUNS=3 repeats each fault (default 1).
"""

import datetime
import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from containers import sh  # noqa: E402
from load import Load, api_chat, webui_chat  # noqa: E402
from playbook_run import run_converge  # noqa: E402

SCENARIO = Path(__file__).resolve().parents[1]
PLAYBOOKS = Path(__file__).resolve().parents[3] / "playbooks"

VIP = "172.29.80.100"
LBS = ["qwen3vl-mol-lb-lb1", "qwen3vl-mol-lb-lb2"]
GPU1 = "qwen3vl-mol-lb-gpu1"
KEY = "molecule-only-key-7d2e"
USER = ("alice", "molecule-only-password")
RUNS = int(os.environ.get("QWEN3VL_FAILOVER_RUNS", "1"))
BACK_WITHIN = 5.0  # the requirement for a recovered instance


def checker_settings():
    return json.loads(sh(LBS[0], "cat /etc/qwen3vl/upstream-check.json").stdout)


@pytest.fixture(scope="module")
def cfg():
    """The checker's settings as the role wrote them on the first load balancer."""
    return checker_settings()


def out_bound(cfg):
    """The checker's own bound, plus one interval for the event loop and the reload on a busy machine."""
    return cfg["interval"] + cfg["fall"] * max(cfg["interval"], cfg["timeout"]) + cfg["interval"]


def state(lb):
    return json.loads(sh(lb, "cat /run/qwen3vl-upstream-check/state.json").stdout)


def servers_of(doc, host):
    return {(s["upstream"], s["server"]): s for s in doc["servers"] if s["host"] == host}


def wait_until(predicate, limit):
    deadline = time.time() + limit
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return predicate()


def gpu1_out(lb, leaving):
    """lb's state once every gpu1 server of the upstreams in ``leaving`` is out of rotation, else False."""
    doc = state(lb)
    mine = servers_of(doc, GPU1)
    return all(not s["in_rotation"] for (u, _server), s in mine.items() if u in leaving) and doc


def nginx_took_out(lb, leaving):
    """lb's state once its checker saw nginx take the reload that took gpu1's ``leaving`` servers out, else False."""
    doc = state(lb)
    mine = servers_of(doc, GPU1)
    return all(not s["in_rotation"] and s["applied"] for (u, _server), s in mine.items() if u in leaving) and doc


def all_in(lb):
    doc = state(lb)
    return all(s["in_rotation"] and s["reason"] == "ok" for s in doc["servers"]) and doc


def test_every_server_starts_in_rotation_and_the_metrics_say_so():
    for lb in LBS:
        doc = wait_until(lambda lb=lb: all_in(lb), 10)
        assert doc, state(lb)
        assert {s["upstream"] for s in doc["servers"]} == {"webui", "api"}
        prom = sh(lb, "cat /var/lib/prometheus/node-exporter/qwen3vl_upstreams.prom").stdout
        assert (
            'qwen3vl_lb_backend_in_rotation{upstream="api",server="172.29.80.21:8000",host="qwen3vl-mol-lb-gpu1"'
            in prom
        )
        assert "down;" not in sh(lb, "cat /etc/nginx/qwen3vl/upstreams.conf").stdout


FAULTS = {
    # name: (fault command, recovery command, servers that must leave, reason)
    "vllm-killed": (
        "systemctl kill -s KILL qwen3vl-standin-vllm",
        "systemctl start qwen3vl-standin-vllm",
        {"webui", "api"},
        "vllm_refused",
    ),
    "vllm-hung": (
        "systemctl kill -s STOP qwen3vl-standin-vllm",
        "systemctl kill -s CONT qwen3vl-standin-vllm",
        {"webui", "api"},
        "vllm_timeout",
    ),
    "webui-killed": (
        "systemctl kill -s KILL qwen3vl-standin-webui",
        "systemctl start qwen3vl-standin-webui",
        {"webui"},
        "ui_refused",
    ),
}


@pytest.mark.parametrize("run", range(RUNS))
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_sick_instance_leaves_rotation_within_the_bound_and_no_new_request_fails(cfg, fault, run):
    cmd, recover, leaving, reason = FAULTS[fault]
    for lb in LBS:
        assert wait_until(lambda lb=lb: all_in(lb), 15), "not all in rotation before the fault: %s" % state(lb)
    load = Load(VIP, [("api", api_chat(VIP, KEY, "qwen3-vl-test")), ("webui", webui_chat(VIP, USER))], 3)
    with load:
        time.sleep(2)
        t_fault = time.time()
        sh(GPU1, cmd)
        # the fault lands somewhere inside the docker exec that causes it: times count from before it, and
        # the bound grows by how long it took
        fault_window = time.time() - t_fault
        try:
            out, took = {}, {}
            for lb in LBS:
                doc = wait_until(lambda lb=lb: gpu1_out(lb, leaving), out_bound(cfg) + 5)
                assert doc, "%s: gpu1 still in rotation: %s" % (lb, state(lb))
                mine = servers_of(doc, GPU1)
                assert {u for u, _server in mine} == {"webui", "api"}, doc  # (an empty match would check nothing)
                for (upstream, _server), s in mine.items():
                    if upstream in leaving:
                        # the stand-in WebUI's health reports its vLLM too (503) and may fail first
                        allowed = {reason, "ui_http_503"} if upstream == "webui" else {reason}
                        assert s["reason"] in allowed, s
                        out[lb] = s["since"] - t_fault
                    else:
                        assert s["in_rotation"], "%s should stay in: %s" % (upstream, s)
                # the checker sees nginx's old workers stop accepting (at most 10 s, else it gives up)
                doc = wait_until(lambda lb=lb: nginx_took_out(lb, leaving), 10)
                assert doc, "%s: nginx not seen taking the reload: %s" % (lb, state(lb))
                for (upstream, _server), s in servers_of(doc, GPU1).items():
                    if upstream in leaving:
                        assert s["since"] <= s["applied"] < s["since"] + 10, s
                        took[lb] = max(took.get(lb, 0), s["applied"] - s["since"])
                prom = sh(lb, "cat /var/lib/prometheus/node-exporter/qwen3vl_upstreams.prom").stdout
                assert re.search(r"^qwen3vl_lb_checker_reload_seconds [0-9.]+$", prom, re.M), prom
            time.sleep(3)
        finally:
            t_recover = time.time()
            sh(GPU1, recover)
        back = {}
        for lb in LBS:
            doc = wait_until(lambda lb=lb: all_in(lb), BACK_WITHIN + 5)
            assert doc, "%s: not back in rotation: %s" % (lb, state(lb))
            back[lb] = max(s["since"] for s in servers_of(doc, GPU1).values()) - t_recover
        time.sleep(1.5)
    split = load.split(t_fault)
    print(
        "\n%s run %d: %d requests, out of rotation after %s s (bound %.2f s), nginx took it %s s later, back after %s s;"
        " failed: "
        "in flight at the fault %d, started in the first second %d, started >= 1 s after %d %s"
        % (
            fault,
            run,
            len(split["all"]),
            {lb[-3:]: round(v, 3) for lb, v in out.items()},
            out_bound(cfg) + fault_window,
            {lb[-3:]: round(v, 3) for lb, v in took.items()},
            {lb[-3:]: round(v, 3) for lb, v in back.items()},
            len(split["in_flight"]),
            len(split["early"]),
            len(split["after"]),
            sorted({r[4] for r in split["after"]})[:3],
        )
    )
    assert split["after"] == [], split["after"][:5]
    for lb, seconds in out.items():
        bound = out_bound(cfg) + fault_window
        assert seconds <= bound, "%s: %.3f s > %.3f s (docker exec %.3f s)" % (lb, seconds, bound, fault_window)
    for lb, seconds in back.items():
        assert seconds <= BACK_WITHIN, "%s: back after %.3f s" % (lb, seconds)
    assert len(split["all"]) > 20  # the load really ran


def access_log_upstreams(lb, start, end):
    """Upstream addresses of the requests nginx logged from ``start`` to ``end`` (epoch seconds)."""
    out = sh(lb, "cat /var/log/nginx/qwen3vl-access.log").stdout
    found = []
    for line in out.splitlines():
        entry = json.loads(line)
        if start <= datetime.datetime.fromisoformat(entry["time"]).timestamp() <= end:
            found.append(entry["upstream_addr"])
    return found


def test_a_drained_instance_gets_no_new_request_and_nothing_fails():
    """playbooks/drain.yml under load: out on both load balancers, its open requests finish, no request
    fails; undrain.yml brings it back and waits until it is in rotation."""
    key = GPU1 + "@0"
    load = Load(VIP, [("api", api_chat(VIP, KEY, "qwen3-vl-test")), ("webui", webui_chat(VIP, USER))], 3)
    with load:
        time.sleep(1.5)
        t0 = time.time()
        _unused, out = run_converge(SCENARIO, {"instance": key, "drain_timeout": 60}, playbook=PLAYBOOKS / "drain.yml")
        drained = time.time()
        for lb in LBS:
            mine = servers_of(state(lb), GPU1)
            assert all(not s["in_rotation"] and s["reason"] == "draining" for s in mine.values()), mine
        time.sleep(3)
        held = time.time()
        _unused, back = run_converge(SCENARIO, {"instance": key}, playbook=PLAYBOOKS / "undrain.yml")
        for lb in LBS:
            assert all_in(lb), state(lb)
        time.sleep(1.5)
    split = load.split(t0)
    print(
        "\ndrain under load: drain.yml took %.2f s (%s), %d requests, %d failed"
        % (
            drained - t0,
            "; ".join(re.findall(r"drained after [0-9.]+ s", out)),
            len(split["all"]),
            len([r for r in split["all"] if not r[3]]),
        )
    )
    assert [r for r in split["all"] if not r[3]] == []
    # nothing reached gpu1 in the whole seconds after the drain returned and before the undrain began
    # (the log has whole seconds; the load kept running, so the other instance got everything)
    assert int(held) - int(drained) >= 2
    windows = {lb: access_log_upstreams(lb, int(drained) + 1, int(held) - 1) for lb in LBS}
    # (only the load balancer holding the VIP sees the load)
    assert any(windows.values()), "no request logged while gpu1 was drained: is the load running?"
    for lb, window in windows.items():
        assert [u for u in window if u.startswith("172.29.80.21:")] == [], (lb, window)
    assert "in_after" in back or "undrained after" in back, back[-2000:]
