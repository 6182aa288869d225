"""upstream_check: configuration, hysteresis, verdicts, nginx upstream blocks, state/metrics files, real probes."""

import asyncio
import contextlib
import http.server
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import types

import pytest

from ansible_collections.qwen3vl.ha.plugins.module_utils import upstream_check as uc

GPU1_WEBUI = "http://10.0.0.1:7860/health"
GPU1_VLLM = "http://10.0.0.1:8000/health"
GPU2_WEBUI = "http://10.0.0.2:7860/health"
GPU2_VLLM = "http://10.0.0.2:8000/health"


def check(name, url):
    return {"name": name, "url": url}


def entry(server, key, *checks, host="", instance=""):
    return {"server": server, "key": key, "host": host, "instance": instance, "checks": list(checks)}


def two_hosts():
    """Two GPU hosts, one instance each: the WebUI is checked on itself and on its vLLM, the API on its vLLM."""
    return {
        "webui": [
            entry(
                "10.0.0.1:7860",
                "gpu1@0",
                check("webui", GPU1_WEBUI),
                check("vllm", GPU1_VLLM),
                host="gpu1",
                instance="qwen3vl-webui-0",
            ),
            entry(
                "10.0.0.2:7860",
                "gpu2@0",
                check("webui", GPU2_WEBUI),
                check("vllm", GPU2_VLLM),
                host="gpu2",
                instance="qwen3vl-webui-0",
            ),
        ],
        "api": [
            entry("10.0.0.1:8000", "gpu1@0", check("vllm", GPU1_VLLM), host="gpu1", instance="qwen3vl-vllm-0"),
            entry("10.0.0.2:8000", "gpu2@0", check("vllm", GPU2_VLLM), host="gpu2", instance="qwen3vl-vllm-0"),
        ],
    }


def raw_config(**settings):
    return dict({"upstreams": two_hosts()}, **settings)


def loaded(**settings):
    config, errors = uc.load_config(raw_config(**settings))
    assert errors == []
    return config


def tmp_paths(tmp_path):
    return {
        "nginx_pid_file": str(tmp_path / "nginx.pid"),
        "upstreams_conf": str(tmp_path / "upstreams.conf"),
        "state_file": str(tmp_path / "state.json"),
        "drain_dir": str(tmp_path / "drain"),
        "textfile": str(tmp_path / "upstream_check.prom"),
    }


def check_state(up, reason="timeout"):
    """A CheckState after its first result (which sets it at once)."""
    state = uc.CheckState()
    state.record(up, "ok" if up else reason, "", 1, 1)
    return state


def all_up(config):
    return {c["url"]: check_state(True) for s in config["servers"] for c in s["checks"]}


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def upstream_blocks(text):
    """{upstream name: [stripped lines inside its block]}."""
    blocks, current = {}, None
    for line in text.splitlines():
        match = re.match(r"^upstream (\S+) \{$", line)
        if match:
            current = match.group(1)
            blocks[current] = []
        elif line == "}":
            current = None
        elif current is not None:
            blocks[current].append(line.strip())
    return blocks


def server_lines(text):
    """{address: its `server` line} for every server of every upstream block."""
    return {
        line.split()[1]: line
        for block in upstream_blocks(text).values()
        for line in block
        if line.startswith("server ")
    }


def down_servers(text):
    return {address for address, line in server_lines(text).items() if re.search(r" down;", line)}


# ---------------------------------------------------------------------------------------------- load_config


def test_load_config_accepts_two_upstreams_and_fills_in_every_default():
    config, errors = uc.load_config(raw_config())
    assert errors == []
    for key in ("interval", "timeout", "fall", "rise", "heartbeat", "nginx_pid_file", "upstreams_conf"):
        assert config[key] == uc.DEFAULTS[key]
    for key in ("state_file", "drain_dir", "textfile"):
        assert config[key] == uc.DEFAULTS[key]
    assert config["nginx"] == uc.DEFAULTS["nginx"]
    assert [(s["upstream"], s["server"], s["key"]) for s in config["servers"]] == [
        ("webui", "10.0.0.1:7860", "gpu1@0"),
        ("webui", "10.0.0.2:7860", "gpu2@0"),
        ("api", "10.0.0.1:8000", "gpu1@0"),
        ("api", "10.0.0.2:8000", "gpu2@0"),
    ]
    webui = config["servers"][0]
    assert webui["host"] == "gpu1"
    assert webui["instance"] == "qwen3vl-webui-0"
    assert webui["checks"] == [check("webui", GPU1_WEBUI), check("vllm", GPU1_VLLM)]


def test_load_config_keeps_given_settings_and_merges_nginx_with_its_defaults():
    config, errors = uc.load_config(
        raw_config(interval=1, timeout=0.5, fall=4, rise=5, heartbeat=30, nginx={"balance": "round_robin"})
    )
    assert errors == []
    given = {"interval": 1, "timeout": 0.5, "fall": 4, "rise": 5, "heartbeat": 30}
    assert {key: config[key] for key in given} == given
    assert config["nginx"]["balance"] == "round_robin"
    for key in ("max_fails", "fail_timeout", "keepalive"):
        assert config["nginx"][key] == uc.DEFAULTS["nginx"][key]


def test_load_config_does_not_change_the_defaults():
    before = json.dumps(uc.DEFAULTS, sort_keys=True)
    uc.load_config(raw_config(nginx={"balance": "ip_hash", "keepalive": 0}))
    assert json.dumps(uc.DEFAULTS, sort_keys=True) == before


def test_load_config_accepts_ipv6_servers_and_check_urls():
    raw = raw_config()
    raw["upstreams"]["api"][0] = entry("[::1]:8000", "local@0", check("vllm", "http://[::1]:8000/health"))
    config, errors = uc.load_config(raw)
    assert errors == []
    assert config["servers"][2]["server"] == "[::1]:8000"
    assert config["servers"][2]["checks"] == [check("vllm", "http://[::1]:8000/health")]


def test_load_config_rejects_what_is_not_a_mapping():
    config, errors = uc.load_config(["interval", 1])
    assert config is None
    assert errors == ["the configuration is not a mapping"]


def _set(key, value):
    def mutate(raw):
        raw[key] = value

    return mutate


def _server(upstream, index, **fields):
    def mutate(raw):
        raw["upstreams"][upstream][index].update(fields)

    return mutate


def _check(index, **fields):
    def mutate(raw):
        raw["upstreams"]["webui"][0]["checks"][index].update(fields)

    return mutate


def _duplicate(raw):
    raw["upstreams"]["webui"][1]["server"] = raw["upstreams"]["webui"][0]["server"]


def _drop_api(raw):
    del raw["upstreams"]["api"]


def _extra_upstream(raw):
    raw["upstreams"]["grpc"] = []


def _no_checks_key(raw):
    del raw["upstreams"]["webui"][0]["checks"]


def _empty_webui(raw):
    raw["upstreams"]["webui"] = []


BAD = [
    (_set("intervall", 1), "unknown settings: intervall"),
    (_set("interval", 0.01), "interval: 0.01"),
    (_set("interval", 61), "interval: 61"),
    (_set("interval", True), "interval: True"),
    (_set("interval", "1"), "interval: '1'"),
    (_set("timeout", 0), "timeout: 0"),
    (_set("fall", 2.5), "fall: 2.5 is not a whole number"),
    (_set("fall", 0), "fall: 0 is not a whole number"),
    (_set("rise", "3"), "rise: '3' is not a whole number"),
    (_set("heartbeat", 0.5), "heartbeat: 0.5"),
    (_set("state_file", "run/state.json"), "state_file: 'run/state.json' is not an absolute path"),
    (_set("upstreams_conf", "upstreams.conf"), "upstreams_conf: 'upstreams.conf' is not an absolute path"),
    (_set("nginx_pid_file", "/run/nginx\n.pid"), "nginx_pid_file:"),
    (_set("drain_dir", ""), "drain_dir: '' is not an absolute path"),
    (_set("textfile", "metrics.prom"), "textfile: 'metrics.prom' is not an absolute path"),
    (_drop_api, "upstreams: needs exactly the keys webui, api"),
    (_extra_upstream, "upstreams: needs exactly the keys webui, api"),
    (_set("upstreams", ["webui", "api"]), "upstreams: needs exactly the keys webui, api"),
    (_empty_webui, "upstreams.webui: no servers"),
    (_server("webui", 0, server="10.0.0.1"), "upstreams.webui[0].server: '10.0.0.1' is not host:port"),
    (_server("api", 1, server="http://10.0.0.2:8000"), "upstreams.api[1].server: 'http://10.0.0.2:8000'"),
    (_server("api", 0, server="::1:8000"), "upstreams.api[0].server: '::1:8000' is not host:port"),
    (_duplicate, "upstreams.webui[1].server: 10.0.0.1:7860 is listed twice"),
    (_no_checks_key, "upstreams.webui[0].checks: needs at least one"),
    (_server("api", 0, checks=[]), "upstreams.api[0].checks: needs at least one"),
    (_check(0, url="https://10.0.0.1:7860/health"), "upstreams.webui[0].checks[0].url: 'https://10.0.0.1:7860/health'"),
    (_check(0, url="http://10.0.0.1:7860"), "upstreams.webui[0].checks[0].url: 'http://10.0.0.1:7860'"),
    (_check(1, url="http://10.0.0.1:70000/health"), "upstreams.webui[0].checks[1].url: 'http://10.0.0.1:70000/health'"),
    (_check(0, name="web ui"), "upstreams.webui[0].checks[0]: needs a name"),
    (_server("webui", 1, key="gpu2/0"), "upstreams.webui[1].key: 'gpu2/0' is not a drain key"),
    (_server("api", 1, key=""), "upstreams.api[1].key: '' is not a drain key"),
    (_set("nginx", {"balance": "fastest"}), "nginx.balance: 'fastest' is not one of"),
    (_set("nginx", {"fail_timeout": "5 seconds"}), "nginx.fail_timeout: '5 seconds'"),
    (_set("nginx", {"fail_timeout": 5}), "nginx.fail_timeout: 5"),
    (_set("nginx", {"max_fails": -1}), "nginx.max_fails: -1"),
    (_set("nginx", {"keepalive": True}), "nginx.keepalive: True"),
    (_set("nginx", "least_conn"), "nginx: 'least_conn' is not a mapping"),
]


@pytest.mark.parametrize(("mutate", "message"), BAD)
def test_load_config_names_the_one_bad_setting(mutate, message):
    raw = raw_config()
    mutate(raw)
    _unused, errors = uc.load_config(raw)
    assert len(errors) == 1, errors
    assert message in errors[0]


def test_load_config_falls_back_to_the_default_for_a_rejected_number_and_path():
    config, errors = uc.load_config(raw_config(interval="fast", state_file="state.json"))
    assert len(errors) == 2
    assert config["interval"] == uc.DEFAULTS["interval"]
    assert config["state_file"] == uc.DEFAULTS["state_file"]


def test_load_config_reports_every_bad_setting_at_once():
    raw = raw_config(interval=0, fall="2", nginx={"balance": "fastest"})
    raw["upstreams"]["api"][0]["server"] = "nope"
    _unused, errors = uc.load_config(raw)
    assert [e.split(":", maxsplit=1)[0] for e in errors] == [
        "interval",
        "fall",
        "nginx.balance",
        "upstreams.api[0].server",
    ]


@pytest.mark.parametrize("server", ["10.0.0.1:70000", "10.0.0.1:0"])
def test_load_config_rejects_a_server_port_out_of_range(server):
    raw = raw_config()
    raw["upstreams"]["webui"][0]["server"] = server
    _unused, errors = uc.load_config(raw)
    assert len(errors) == 1, errors
    assert errors[0].startswith("upstreams.webui[0].server:")


def test_load_config_accepts_a_server_without_a_drain_key():
    raw = raw_config()
    del raw["upstreams"]["webui"][0]["key"]
    config, errors = uc.load_config(raw)
    assert errors == []
    assert config["servers"][0]["key"]


def test_load_config_rejects_a_fail_timeout_in_milliseconds_that_nginx_refuses():
    _unused, errors = uc.load_config(raw_config(nginx={"fail_timeout": "500ms"}))
    assert len(errors) == 1, errors
    assert errors[0].startswith("nginx.fail_timeout:")


# ---------------------------------------------------------------------------------------------- parse_url


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("http://10.0.0.1:8000/health", ("10.0.0.1", 8000, "/health")),
        ("http://gpu-1.lan:7860/", ("gpu-1.lan", 7860, "/")),
        ("http://[::1]:8000/health", ("::1", 8000, "/health")),
        ("http://[2001:db8::21]:7860/api/health?full=1", ("2001:db8::21", 7860, "/api/health?full=1")),
        ("http://h:1/x", ("h", 1, "/x")),
        ("http://h:65535/x", ("h", 65535, "/x")),
    ],
)
def test_parse_url_splits_host_port_and_path(url, parsed):
    assert uc.parse_url(url) == parsed


@pytest.mark.parametrize(
    "url",
    [
        "https://10.0.0.1:8000/health",
        "http://10.0.0.1:8000",
        "http://10.0.0.1/health",
        "http://10.0.0.1:0/health",
        "http://10.0.0.1:65536/health",
        "http://10.0.0.1:70000/health",
        "http://10.0.0.1:123456/health",
        "http://:8000/health",
        "http://user@10.0.0.1:8000/health",
        "http://10.0.0.1:8000/he alth",
        "http://::1:8000/health",
        " http://10.0.0.1:8000/health",
        "",
        None,
        8000,
    ],
)
def test_parse_url_refuses_what_is_not_plain_http_host_port_path(url):
    assert uc.parse_url(url) is None


# ---------------------------------------------------------------------------------------------- bounds


def test_rotation_bounds_when_the_timeout_is_longer_than_the_interval():
    config = loaded(interval=0.1, timeout=0.3, fall=2, rise=3)
    # one interval to the first probe that sees the fault, then fall (rise) probes that each last up to the timeout
    assert uc.out_of_rotation_bound(config) == pytest.approx(0.1 + 2 * 0.3)
    assert uc.back_in_rotation_bound(config) == pytest.approx(0.1 + 3 * 0.3)


def test_rotation_bounds_when_the_timeout_is_shorter_than_the_interval():
    config = loaded(interval=1.0, timeout=0.2, fall=2, rise=3)
    # a probe then starts once per interval however fast it fails
    assert uc.out_of_rotation_bound(config) == pytest.approx(1.0 + 2 * 1.0)
    assert uc.back_in_rotation_bound(config) == pytest.approx(1.0 + 3 * 1.0)


# ---------------------------------------------------------------------------------------------- CheckState


def test_check_state_is_unknown_before_its_first_result():
    state = uc.CheckState()
    assert state.up is None
    assert state.reason == "unknown"


def test_check_state_first_pass_sets_it_up_at_once():
    state = uc.CheckState()
    assert state.record(True, "ok", "", 3, 3) is True
    assert state.up is True
    assert state.reason == "ok"


def test_check_state_first_failure_sets_it_down_at_once():
    state = uc.CheckState()
    assert state.record(False, "refused", "Connect call failed", 3, 3) is True
    assert state.up is False
    assert (state.reason, state.detail) == ("refused", "Connect call failed")


def test_check_state_goes_down_only_after_fall_failures_in_a_row():
    state = check_state(True)
    assert state.record(False, "timeout", "", 3, 2) is False
    assert state.record(False, "timeout", "", 3, 2) is False
    assert state.up is True
    assert state.reason == "ok"
    assert state.record(False, "timeout", "no answer within 0.3s", 3, 2) is True
    assert state.up is False
    assert (state.reason, state.detail) == ("timeout", "no answer within 0.3s")


def test_check_state_a_pass_in_between_resets_the_failure_count():
    state = check_state(True)
    results = [state.record(ok, "ok" if ok else "http_503", "", 3, 2) for ok in (False, False, True, False, False)]
    assert results == [False] * 5
    assert state.up is True
    assert state.record(False, "http_503", "", 3, 2) is True
    assert state.up is False


def test_check_state_comes_back_only_after_rise_passes_in_a_row_and_keeps_its_reason_while_down():
    state = check_state(False, "refused")
    assert state.record(True, "ok", "", 2, 3) is False
    assert state.record(True, "ok", "", 2, 3) is False
    assert (state.up, state.reason) == (False, "refused")
    # a failure in between starts the count again, and its reason replaces the old one
    assert state.record(False, "timeout", "slow", 2, 3) is False
    assert (state.up, state.reason, state.detail) == (False, "timeout", "slow")
    assert [state.record(True, "ok", "", 2, 3) for _i in range(3)] == [False, False, True]
    assert (state.up, state.reason, state.detail) == (True, "ok", "")


def test_check_state_record_returns_true_exactly_when_the_verdict_changes():
    state = uc.CheckState()
    fall, rise = 2, 2
    sequence = [True, False, True, False, False, False, True, False, True, True, True, False]
    returned, seen = [], []
    for ok in sequence:
        before = state.up
        returned.append(state.record(ok, "ok" if ok else "reset", "", fall, rise))
        seen.append(state.up != before)
    assert returned == seen
    # first result: up; two failures in a row: down; two passes in a row: up
    assert [i for i, changed in enumerate(returned) if changed] == [0, 4, 9]
    assert state.up is True


def test_check_state_fall_and_rise_of_one_follow_every_result():
    state = check_state(True)
    assert [state.record(ok, "ok" if ok else "error", "", 1, 1) for ok in (False, False, True, True, False)] == [
        True,
        False,
        True,
        False,
        True,
    ]


# ---------------------------------------------------------------------------------------------- verdicts


def test_verdicts_every_server_is_in_when_all_its_checks_are_up():
    config = loaded()
    rotation, failing_open = uc.verdicts(config["servers"], all_up(config), set())
    assert rotation == {(s["upstream"], s["server"]): (True, "ok") for s in config["servers"]}
    assert failing_open == {"webui": False, "api": False}


def test_verdicts_a_dead_vllm_takes_out_its_webui_and_its_api_server():
    config = loaded()
    checks = all_up(config)
    checks[GPU1_VLLM] = check_state(False, "timeout")
    rotation, failing_open = uc.verdicts(config["servers"], checks, set())
    assert rotation[("webui", "10.0.0.1:7860")] == (False, "vllm_timeout")
    assert rotation[("api", "10.0.0.1:8000")] == (False, "vllm_timeout")
    assert rotation[("webui", "10.0.0.2:7860")] == (True, "ok")
    assert rotation[("api", "10.0.0.2:8000")] == (True, "ok")
    assert failing_open == {"webui": False, "api": False}


def test_verdicts_a_dead_webui_takes_out_only_the_webui_server():
    config = loaded()
    checks = all_up(config)
    checks[GPU2_WEBUI] = check_state(False, "http_502")
    rotation, _unused = uc.verdicts(config["servers"], checks, set())
    assert rotation[("webui", "10.0.0.2:7860")] == (False, "webui_http_502")
    assert rotation[("api", "10.0.0.2:8000")] == (True, "ok")


def test_verdicts_the_reason_names_the_first_failing_check():
    config = loaded()
    checks = all_up(config)
    checks[GPU1_WEBUI] = check_state(False, "refused")
    checks[GPU1_VLLM] = check_state(False, "timeout")
    rotation, _unused = uc.verdicts(config["servers"], checks, set())
    assert rotation[("webui", "10.0.0.1:7860")] == (False, "webui_refused")
    assert rotation[("api", "10.0.0.1:8000")] == (False, "vllm_timeout")


def test_verdicts_a_drained_key_is_out_with_reason_draining_even_when_healthy():
    config = loaded()
    rotation, failing_open = uc.verdicts(config["servers"], all_up(config), {"gpu2@0"})
    assert rotation[("webui", "10.0.0.2:7860")] == (False, "draining")
    assert rotation[("api", "10.0.0.2:8000")] == (False, "draining")
    assert rotation[("webui", "10.0.0.1:7860")] == (True, "ok")
    assert rotation[("api", "10.0.0.1:8000")] == (True, "ok")
    assert failing_open == {"webui": False, "api": False}


def test_verdicts_an_unknown_check_counts_as_in():
    config = loaded()
    checks = all_up(config)
    checks[GPU1_WEBUI] = uc.CheckState()
    rotation, _unused = uc.verdicts(config["servers"], checks, set())
    assert rotation[("webui", "10.0.0.1:7860")] == (True, "unknown")
    assert rotation[("api", "10.0.0.1:8000")] == (True, "ok")


def test_verdicts_an_unknown_check_does_not_hide_a_later_failing_one():
    config = loaded()
    checks = all_up(config)
    checks[GPU1_WEBUI] = uc.CheckState()
    checks[GPU1_VLLM] = check_state(False, "reset")
    rotation, _unused = uc.verdicts(config["servers"], checks, set())
    assert rotation[("webui", "10.0.0.1:7860")] == (False, "vllm_reset")


def test_verdicts_fail_open_puts_back_every_server_of_an_upstream_with_none_left_and_spares_the_other():
    raw = raw_config()
    # WebUIs checked on themselves only here, so a dead vLLM fleet empties the api upstream alone
    for server in raw["upstreams"]["webui"]:
        server["checks"] = server["checks"][:1]
    config, errors = uc.load_config(raw)
    assert errors == []
    checks = all_up(config)
    checks[GPU1_VLLM] = check_state(False, "timeout")
    checks[GPU2_VLLM] = check_state(False, "http_503")
    rotation, failing_open = uc.verdicts(config["servers"], checks, set())
    assert failing_open == {"webui": False, "api": True}
    assert rotation[("api", "10.0.0.1:8000")] == (True, "vllm_timeout")
    assert rotation[("api", "10.0.0.2:8000")] == (True, "vllm_http_503")
    assert rotation[("webui", "10.0.0.1:7860")] == (True, "ok")
    assert rotation[("webui", "10.0.0.2:7860")] == (True, "ok")


def test_verdicts_fail_open_also_covers_an_upstream_drained_to_nothing_but_not_one_with_a_server_left():
    config = loaded()
    checks = all_up(config)
    checks[GPU1_WEBUI] = check_state(False, "refused")
    rotation, failing_open = uc.verdicts(config["servers"], checks, {"gpu2@0"})
    # webui: gpu1 fails its check and gpu2 is drained -> nothing left -> both in
    assert failing_open == {"webui": True, "api": False}
    assert rotation[("webui", "10.0.0.1:7860")] == (True, "webui_refused")
    assert rotation[("webui", "10.0.0.2:7860")] == (True, "draining")
    # api: gpu1 is healthy, so the drained gpu2 stays out
    assert rotation[("api", "10.0.0.1:8000")] == (True, "ok")
    assert rotation[("api", "10.0.0.2:8000")] == (False, "draining")


# ---------------------------------------------------------------------------------------------- render


def _rotation_with_gpu1_vllm_down(config):
    checks = all_up(config)
    checks[GPU1_VLLM] = check_state(False, "timeout")
    rotation, _unused = uc.verdicts(config["servers"], checks, set())
    return rotation


def test_render_writes_both_upstream_blocks_with_their_own_servers():
    config = loaded()
    text = uc.render(config, _rotation_with_gpu1_vllm_down(config))
    assert "upstream qwen3vl_webui {" in text.splitlines()
    assert "upstream qwen3vl_api {" in text.splitlines()
    blocks = upstream_blocks(text)
    assert sorted(blocks) == ["qwen3vl_api", "qwen3vl_webui"]
    assert [line.split()[1] for line in blocks["qwen3vl_webui"] if line.startswith("server ")] == [
        "10.0.0.1:7860",
        "10.0.0.2:7860",
    ]
    assert [line.split()[1] for line in blocks["qwen3vl_api"] if line.startswith("server ")] == [
        "10.0.0.1:8000",
        "10.0.0.2:8000",
    ]
    assert "zone qwen3vl_webui 64k;" in blocks["qwen3vl_webui"]
    assert "zone qwen3vl_api 64k;" in blocks["qwen3vl_api"]
    assert text.endswith("}\n")


def test_render_marks_down_exactly_the_servers_out_of_rotation():
    config = loaded()
    text = uc.render(config, _rotation_with_gpu1_vllm_down(config))
    assert down_servers(text) == {"10.0.0.1:7860", "10.0.0.1:8000"}
    assert text.count(" down;") == 2
    everyone_in, _unused = uc.verdicts(config["servers"], all_up(config), set())
    assert " down" not in uc.render(config, everyone_in)


def test_render_server_lines_carry_max_fails_fail_timeout_and_the_host_comment():
    config = loaded(nginx={"max_fails": 3, "fail_timeout": "10s"})
    lines = server_lines(uc.render(config, _rotation_with_gpu1_vllm_down(config)))
    assert lines["10.0.0.1:7860"] == "server 10.0.0.1:7860 max_fails=3 fail_timeout=10s down;  # gpu1 qwen3vl-webui-0"
    assert lines["10.0.0.2:8000"] == "server 10.0.0.2:8000 max_fails=3 fail_timeout=10s;  # gpu2 qwen3vl-vllm-0"


def test_render_leaves_out_the_comment_of_a_server_without_host_or_instance():
    raw = raw_config()
    raw["upstreams"]["api"][0].update(host="", instance="")
    config, _unused = uc.load_config(raw)
    rotation, _unused = uc.verdicts(config["servers"], all_up(config), set())
    assert server_lines(uc.render(config, rotation))["10.0.0.1:8000"].endswith("fail_timeout=5s;")


@pytest.mark.parametrize("balance", ["least_conn", "ip_hash", "random", "random two least_conn"])
def test_render_puts_the_balance_method_in_both_blocks(balance):
    config = loaded(nginx={"balance": balance})
    rotation, _unused = uc.verdicts(config["servers"], all_up(config), set())
    blocks = upstream_blocks(uc.render(config, rotation))
    for block in blocks.values():
        assert block.count("%s;" % balance) == 1
        # the method comes before keepalive, as nginx requires
        assert block.index("%s;" % balance) < block.index("keepalive 32;")


def test_render_round_robin_has_no_balance_line():
    config = loaded(nginx={"balance": "round_robin"})
    rotation, _unused = uc.verdicts(config["servers"], all_up(config), set())
    text = uc.render(config, rotation)
    for method in ("least_conn", "ip_hash", "random", "round_robin"):
        assert method not in text


def test_render_keepalive_line_follows_the_setting_and_is_absent_at_zero():
    config = loaded(nginx={"keepalive": 16})
    rotation, _unused = uc.verdicts(config["servers"], all_up(config), set())
    assert uc.render(config, rotation).count("    keepalive 16;\n") == 2
    config = loaded(nginx={"keepalive": 0})
    assert "keepalive" not in uc.render(config, rotation)


@pytest.mark.parametrize(
    ("balance", "fail_timeout", "keepalive"),
    [
        ("least_conn", "5s", 32),
        ("ip_hash", "10", 8),
        ("random", "2m", 0),
        ("random two least_conn", "0", 8),
        ("round_robin", "30s", 0),
    ],
)
def test_render_output_passes_nginx_t(tmp_path, balance, fail_timeout, keepalive):
    nginx = shutil.which("nginx")
    if nginx is None:
        pytest.skip("nginx is not on PATH")
    raw = raw_config(nginx={"balance": balance, "max_fails": 2, "fail_timeout": fail_timeout, "keepalive": keepalive})
    raw["upstreams"]["api"].append(entry("[::1]:8001", "local@1", check("vllm", "http://[::1]:8001/health")))
    config, errors = uc.load_config(raw)
    assert errors == []
    checks = all_up(config)
    checks[GPU1_VLLM] = check_state(False)
    rotation, _unused = uc.verdicts(config["servers"], checks, {"local@1"})
    assert down_servers(uc.render(config, rotation)) == {"10.0.0.1:7860", "10.0.0.1:8000", "[::1]:8001"}
    upstreams = tmp_path / "upstreams.conf"
    upstreams.write_text(uc.render(config, rotation))
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / name).mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        "pid %(d)s/nginx.pid;\nerror_log %(d)s/error.log;\nevents {}\n"
        "http {\n  access_log off;\n  client_body_temp_path %(d)s/body;\n  proxy_temp_path %(d)s/proxy;\n"
        "  fastcgi_temp_path %(d)s/fastcgi;\n  uwsgi_temp_path %(d)s/uwsgi;\n  scgi_temp_path %(d)s/scgi;\n"
        "  include %(u)s;\n"
        "  server { listen 127.0.0.1:%(p)d; location / { proxy_pass http://qwen3vl_webui; } }\n}\n"
        % {"d": tmp_path, "u": upstreams, "p": free_port()}
    )
    usage = subprocess.run([nginx, "-h"], capture_output=True, text=True, timeout=30, check=False)
    # -e (nginx >= 1.19.5) keeps the startup error log out of /var/log; Ubuntu 22.04's 1.18 has no -e
    early_log = ["-e", str(tmp_path / "error.log")] if "-e filename" in usage.stdout + usage.stderr else []
    result = subprocess.run(
        [nginx, "-t", "-q", "-p", str(tmp_path), *early_log, "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------------------------- metrics

SAMPLE = re.compile(r"^([a-z0-9_]+)\{(.*)\} (\S+)$")
LABEL = re.compile(r'([a-z_]+)="((?:[^"\\]|\\.)*)"')


def samples(text, name):
    """[(labels dict, value)] of the metric ``name``; labels unescaped."""
    found = []
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and match.group(1) == name:
            labels = {k: re.sub(r"\\(.)", r"\1", v) for k, v in LABEL.findall(match.group(2))}
            found.append((labels, match.group(3)))
    return found


def test_metrics_one_in_rotation_sample_per_server_with_labels_value_and_reason():
    config = loaded()
    rotation = _rotation_with_gpu1_vllm_down(config)
    text = uc.metrics(config, rotation, {"webui": False, "api": False}, {}, 1700000000.5)
    got = samples(text, "qwen3vl_lb_backend_in_rotation")
    assert len(got) == len(config["servers"]) == 4
    by_server = {(labels["upstream"], labels["server"]): (labels, value) for labels, value in got}
    for s in config["servers"]:
        labels, value = by_server[(s["upstream"], s["server"])]
        in_rotation, reason = rotation[(s["upstream"], s["server"])]
        assert value == ("1" if in_rotation else "0")
        assert labels == {
            "upstream": s["upstream"],
            "server": s["server"],
            "host": s["host"],
            "instance": s["instance"],
            "reason": reason,
        }
    assert by_server[("api", "10.0.0.1:8000")] == (
        {
            "upstream": "api",
            "server": "10.0.0.1:8000",
            "host": "gpu1",
            "instance": "qwen3vl-vllm-0",
            "reason": "vllm_timeout",
        },
        "0",
    )
    assert "qwen3vl_lb_checker_heartbeat_timestamp_seconds 1700000000.500" in text.splitlines()


def test_metrics_failing_open_and_transition_counters():
    config = loaded()
    rotation, _unused = uc.verdicts(config["servers"], all_up(config), set())
    text = uc.metrics(config, rotation, {"webui": False, "api": True}, {("api", "10.0.0.2:8000"): 3}, 0)
    failing_open = {labels["upstream"]: value for labels, value in samples(text, "qwen3vl_lb_upstream_failing_open")}
    assert failing_open == {"webui": "0", "api": "1"}
    assert len(samples(text, "qwen3vl_lb_upstream_failing_open")) == 2
    transitions = {
        (labels["upstream"], labels["server"]): value
        for labels, value in samples(text, "qwen3vl_lb_backend_transitions_total")
    }
    assert transitions == {
        ("webui", "10.0.0.1:7860"): "0",
        ("webui", "10.0.0.2:7860"): "0",
        ("api", "10.0.0.1:8000"): "0",
        ("api", "10.0.0.2:8000"): "3",
    }


def test_metrics_every_line_is_a_comment_or_a_well_formed_sample():
    config = loaded()
    rotation, _unused = uc.verdicts(config["servers"], all_up(config), set())
    text = uc.metrics(config, rotation, {"webui": False, "api": False}, {}, 12.0)
    assert text.endswith("\n")
    for line in text.splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or re.match(r"^[a-z0-9_]+(\{.*\})? \S+$", line)
    for name in ("in_rotation", "transitions_total", "failing_open"):
        assert sum(line.startswith("# TYPE qwen3vl_lb_") and name in line for line in text.splitlines()) == 1


def test_metrics_escapes_quotes_and_backslashes_in_labels():
    raw = raw_config()
    raw["upstreams"]["webui"][0].update(host='gpu"1\\a', instance="multi\nline")
    config, errors = uc.load_config(raw)
    assert errors == []
    rotation, _unused = uc.verdicts(config["servers"], all_up(config), set())
    text = uc.metrics(config, rotation, {}, {}, 0)
    assert 'host="gpu\\"1\\\\a",instance="multi line"' in text
    labels = [
        labels
        for labels, _value in samples(text, "qwen3vl_lb_backend_in_rotation")
        if labels["server"] == "10.0.0.1:7860"
    ]
    assert labels[0]["host"] == 'gpu"1\\a'
    # no raw newline breaks a sample in two
    assert not any(line.startswith('line"') for line in text.splitlines())
    assert len(samples(text, "qwen3vl_lb_backend_in_rotation")) == 4


# ---------------------------------------------------------------------------------------------- write_atomic


def test_write_atomic_writes_a_new_file_with_mode_0644_and_no_leftovers(tmp_path):
    path = tmp_path / "upstreams.conf"
    assert uc.write_atomic(str(path), "upstream a {}\n") is True
    assert path.read_text() == "upstream a {}\n"
    assert path.stat().st_mode & 0o777 == 0o644
    assert os.listdir(tmp_path) == ["upstreams.conf"]


def test_write_atomic_honours_the_mode(tmp_path):
    path = tmp_path / "state.json"
    assert uc.write_atomic(str(path), "{}\n", mode=0o600) is True
    assert path.stat().st_mode & 0o777 == 0o600


def test_write_atomic_leaves_an_identical_file_alone(tmp_path):
    path = tmp_path / "upstreams.conf"
    path.write_text("same\n")
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    before = path.stat()
    assert uc.write_atomic(str(path), "same\n") is False
    after = path.stat()
    assert (after.st_mtime_ns, after.st_ino) == (before.st_mtime_ns, before.st_ino)


def test_write_atomic_replaces_a_different_file(tmp_path):
    path = tmp_path / "upstreams.conf"
    path.write_text("old\n")
    inode = path.stat().st_ino
    assert uc.write_atomic(str(path), "new\n") is True
    assert path.read_text() == "new\n"
    # a rename, not an in-place write: nginx never reads half a file
    assert path.stat().st_ino != inode
    assert os.listdir(tmp_path) == ["upstreams.conf"]


def test_write_atomic_into_a_missing_directory_raises_and_leaves_nothing(tmp_path):
    with pytest.raises(OSError):
        uc.write_atomic(str(tmp_path / "missing" / "state.json"), "{}\n")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------- read_drained


def test_read_drained_of_a_missing_directory_is_empty(tmp_path):
    assert uc.read_drained(str(tmp_path / "drain")) == set()


def test_read_drained_returns_the_valid_file_names_only(tmp_path):
    for name in ("gpu1@0", "gpu2@1", "_2001_db8__5__8000", "bad name", "semi;colon", "x" * 201, "10.0.0.1:8000"):
        (tmp_path / name).write_text("")
    assert uc.read_drained(str(tmp_path)) == {"gpu1@0", "gpu2@1", "_2001_db8__5__8000"}


# ---------------------------------------------------------------------------------------------- Checker


class FakeClock:
    def __init__(self, now=1_700_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


def make_checker(tmp_path, **settings):
    """A checker with a fake clock and a fake nginx: each reload is a token (its number); nginx has taken
    the reloads whose numbers are in ``taken``. ``started`` takes every reload at once."""
    config = loaded(**dict(tmp_paths(tmp_path), fall=3, rise=2, heartbeat=5, **settings))
    clock = FakeClock()
    reloads = []
    taken = set()
    log = []

    def reload():
        reloads.append(clock.now)
        return len(reloads)

    checker = uc.Checker(config, reload, log.append, clock=clock, applied=lambda token: token in taken)
    return types.SimpleNamespace(
        checker=checker, clock=clock, reloads=reloads, taken=taken, log=log, config=config, tmp=tmp_path
    )


def started(tmp_path, **settings):
    """A checker whose every check passed once, after the first (forced) update."""
    h = make_checker(tmp_path, **settings)
    for url in h.checker.urls():
        h.checker.record(url, True, "ok")
    assert h.checker.update(force=True) is True
    h.taken.add(len(h.reloads))
    assert h.checker.confirm() is True
    del h.log[:]
    return h


def upstreams_text(h):
    return (h.tmp / "upstreams.conf").read_text()


def state(h):
    doc = json.loads((h.tmp / "state.json").read_text())
    return doc, {(s["upstream"], s["server"]): s for s in doc["servers"]}


def fail(h, url, times, reason="timeout"):
    return [h.checker.record(url, False, reason, "detail of %s" % reason) for _i in range(times)]


def test_checker_probes_each_distinct_url_once():
    checker = uc.Checker(loaded(), lambda: None, lambda line: None)
    assert checker.urls() == sorted({GPU1_WEBUI, GPU1_VLLM, GPU2_WEBUI, GPU2_VLLM})


def test_checker_is_not_ready_and_writes_nothing_until_every_check_has_a_result(tmp_path):
    h = make_checker(tmp_path)
    urls = h.checker.urls()
    for url in urls[:-1]:
        h.checker.record(url, True, "ok")
        assert h.checker.ready() is False
    assert sorted(os.listdir(tmp_path)) == []
    assert h.reloads == []
    h.checker.record(urls[-1], False, "refused")
    assert h.checker.ready() is True
    assert sorted(os.listdir(tmp_path)) == []


def test_checker_first_forced_update_writes_everything_and_reloads_once(tmp_path):
    h = make_checker(tmp_path)
    for url in h.checker.urls():
        h.checker.record(url, True, "ok")
    assert h.checker.update(force=True) is True
    assert len(h.reloads) == 1
    assert h.checker.reloads == 1
    text = upstreams_text(h)
    assert set(server_lines(text)) == {"10.0.0.1:7860", "10.0.0.2:7860", "10.0.0.1:8000", "10.0.0.2:8000"}
    assert down_servers(text) == set()
    doc, servers = state(h)
    assert all(s["in_rotation"] and s["reason"] == "ok" for s in servers.values())
    assert doc["failing_open"] == {"webui": False, "api": False}
    assert (tmp_path / "upstream_check.prom").exists()
    # nothing changed: a second update, forced or not, writes the same file and does not reload
    assert h.checker.update(force=True) is False
    assert h.checker.update() is False
    assert len(h.reloads) == 1


def test_checker_first_update_does_not_reload_when_nginx_already_has_that_file(tmp_path):
    h = make_checker(tmp_path)
    for url in h.checker.urls():
        h.checker.record(url, True, "ok")
    rotation, _unused = uc.verdicts(h.config["servers"], h.checker.checks, set())
    (tmp_path / "upstreams.conf").write_text(uc.render(h.config, rotation))
    assert h.checker.update(force=True) is False
    assert h.reloads == []
    _doc, servers = state(h)
    assert {s["applied"] for s in servers.values()} == {h.clock.now}  # nginx serves that file already


def test_checker_fall_failures_of_a_vllm_check_take_its_webui_and_api_server_out(tmp_path):
    h = started(tmp_path)
    fall = h.config["fall"]
    assert fail(h, GPU1_VLLM, fall - 1) == [False] * (fall - 1)
    assert h.checker.update() is False
    assert down_servers(upstreams_text(h)) == set()
    assert len(h.reloads) == 1
    h.clock.now += 1
    assert fail(h, GPU1_VLLM, 1) == [True]
    assert h.checker.update() is True
    assert len(h.reloads) == 2
    assert down_servers(upstreams_text(h)) == {"10.0.0.1:7860", "10.0.0.1:8000"}
    out = [line for line in h.log if "out of rotation" in line]
    assert len(out) == 2
    assert any("(webui 10.0.0.1:7860)" in line and "vllm_timeout" in line and "gpu1" in line for line in out)
    assert any("(api 10.0.0.1:8000)" in line and "vllm_timeout" in line for line in out)
    assert any(line.startswith("check %s down: timeout" % GPU1_VLLM) for line in h.log)
    _unused, servers = state(h)
    assert servers[("api", "10.0.0.1:8000")]["in_rotation"] is False
    assert servers[("api", "10.0.0.1:8000")]["reason"] == "vllm_timeout"
    assert servers[("api", "10.0.0.1:8000")]["since"] == h.clock.now
    assert servers[("api", "10.0.0.2:8000")]["in_rotation"] is True


def test_checker_repeated_failures_do_not_reload_again_and_a_new_reason_only_updates_the_state(tmp_path):
    h = started(tmp_path)
    fail(h, GPU1_VLLM, h.config["fall"])
    h.checker.update()
    went_out = h.clock.now
    assert len(h.reloads) == 2
    for _i in range(5):
        h.clock.now += 0.1
        fail(h, GPU1_VLLM, 1)
        assert h.checker.update() is False
    assert len(h.reloads) == 2
    h.clock.now += 0.1
    fail(h, GPU1_VLLM, 1, reason="refused")
    assert h.checker.update() is False
    assert len(h.reloads) == 2
    _unused, servers = state(h)
    assert servers[("webui", "10.0.0.1:7860")]["reason"] == "vllm_refused"
    # still out since it went out
    assert servers[("webui", "10.0.0.1:7860")]["since"] == went_out


def test_checker_puts_a_server_back_only_after_rise_passes(tmp_path):
    h = started(tmp_path)
    fail(h, GPU1_VLLM, h.config["fall"])
    h.checker.update()
    del h.log[:]
    rise = h.config["rise"]
    for _i in range(rise - 1):
        h.clock.now += 0.2
        assert h.checker.record(GPU1_VLLM, True, "ok") is False
        assert h.checker.update() is False
    assert down_servers(upstreams_text(h)) == {"10.0.0.1:7860", "10.0.0.1:8000"}
    h.clock.now += 0.2
    assert h.checker.record(GPU1_VLLM, True, "ok") is True
    assert h.checker.update() is True
    assert len(h.reloads) == 3
    assert down_servers(upstreams_text(h)) == set()
    assert len([line for line in h.log if " in rotation (" in line]) == 2
    _unused, servers = state(h)
    assert (servers[("webui", "10.0.0.1:7860")]["in_rotation"], servers[("webui", "10.0.0.1:7860")]["reason"]) == (
        True,
        "ok",
    )
    assert servers[("webui", "10.0.0.1:7860")]["since"] == h.clock.now


def test_checker_drain_takes_the_key_out_with_reason_draining_and_back(tmp_path):
    h = started(tmp_path)
    assert h.checker.update(drained={"gpu2@0"}) is True
    assert down_servers(upstreams_text(h)) == {"10.0.0.2:7860", "10.0.0.2:8000"}
    _unused, servers = state(h)
    assert (servers[("api", "10.0.0.2:8000")]["in_rotation"], servers[("api", "10.0.0.2:8000")]["reason"]) == (
        False,
        "draining",
    )
    assert any("out of rotation (api 10.0.0.2:8000): draining" in line for line in h.log)
    # drained stays drained when update() is not told otherwise
    assert h.checker.update() is False
    assert down_servers(upstreams_text(h)) == {"10.0.0.2:7860", "10.0.0.2:8000"}
    assert h.checker.update(drained=set()) is True
    assert down_servers(upstreams_text(h)) == set()
    assert len(h.reloads) == 3


def test_checker_state_file_and_textfile_match_the_rotation(tmp_path):
    h = started(tmp_path)
    first = h.clock.now
    h.clock.now += 2.5
    fail(h, GPU2_WEBUI, h.config["fall"], reason="http_502")
    h.checker.update()
    doc, servers = state(h)
    assert doc["time"] == h.clock.now
    assert doc["failing_open"] == {"webui": False, "api": False}
    assert servers[("webui", "10.0.0.2:7860")] == {
        "upstream": "webui",
        "server": "10.0.0.2:7860",
        "host": "gpu2",
        "instance": "qwen3vl-webui-0",
        "key": "gpu2@0",
        "in_rotation": False,
        "reason": "webui_http_502",
        "since": first + 2.5,
        "applied": None,
    }
    for sid in (("webui", "10.0.0.1:7860"), ("api", "10.0.0.1:8000"), ("api", "10.0.0.2:8000")):
        assert (servers[sid]["in_rotation"], servers[sid]["reason"], servers[sid]["since"]) == (True, "ok", first)
        assert servers[sid]["applied"] == first
    prom = (tmp_path / "upstream_check.prom").read_text()
    in_rotation = {
        (labels["upstream"], labels["server"]): (value, labels["reason"])
        for labels, value in samples(prom, "qwen3vl_lb_backend_in_rotation")
    }
    assert in_rotation == {
        ("webui", "10.0.0.1:7860"): ("1", "ok"),
        ("webui", "10.0.0.2:7860"): ("0", "webui_http_502"),
        ("api", "10.0.0.1:8000"): ("1", "ok"),
        ("api", "10.0.0.2:8000"): ("1", "ok"),
    }
    transitions = {
        (labels["upstream"], labels["server"]): value
        for labels, value in samples(prom, "qwen3vl_lb_backend_transitions_total")
    }
    assert transitions[("webui", "10.0.0.2:7860")] == "1"
    assert transitions[("api", "10.0.0.2:8000")] == "0"
    assert "qwen3vl_lb_checker_heartbeat_timestamp_seconds %.3f" % h.clock.now in prom.splitlines()


def test_checker_without_a_textfile_writes_only_the_state(tmp_path):
    started(tmp_path, textfile="")
    assert sorted(os.listdir(tmp_path)) == ["state.json", "upstreams.conf"]


def test_checker_heartbeat_rewrites_the_state_file_without_reloading(tmp_path):
    h = started(tmp_path)
    written = h.clock.now
    conf_mtime = (tmp_path / "upstreams.conf").stat().st_mtime_ns
    h.clock.now = written + h.config["heartbeat"] - 0.5
    assert h.checker.update() is False
    assert state(h)[0]["time"] == written
    h.clock.now = written + h.config["heartbeat"]
    assert h.checker.update() is False
    assert state(h)[0]["time"] == written + h.config["heartbeat"]
    prom = (tmp_path / "upstream_check.prom").read_text()
    assert "qwen3vl_lb_checker_heartbeat_timestamp_seconds %.3f" % h.clock.now in prom.splitlines()
    assert len(h.reloads) == 1
    assert (tmp_path / "upstreams.conf").stat().st_mtime_ns == conf_mtime


def test_checker_fails_open_when_every_server_of_an_upstream_is_out(tmp_path):
    h = started(tmp_path)
    fail(h, GPU1_VLLM, h.config["fall"])
    h.checker.update()
    fail(h, GPU2_VLLM, h.config["fall"], reason="http_503")
    assert h.checker.update() is True
    assert down_servers(upstreams_text(h)) == set()
    doc, servers = state(h)
    assert doc["failing_open"] == {"webui": True, "api": True}
    assert servers[("api", "10.0.0.2:8000")]["in_rotation"] is True
    assert servers[("api", "10.0.0.2:8000")]["reason"] == "vllm_http_503"
    assert any("upstream api: every server failed its checks" in line for line in h.log)
    h.checker.record(GPU2_VLLM, True, "ok")
    h.checker.record(GPU2_VLLM, True, "ok")
    h.checker.update()
    assert state(h)[0]["failing_open"] == {"webui": False, "api": False}
    assert down_servers(upstreams_text(h)) == {"10.0.0.1:7860", "10.0.0.1:8000"}
    assert any("upstream api: no longer failing open" in line for line in h.log)


def test_checker_notes_when_nginx_took_the_reload_that_took_a_server_out(tmp_path):
    h = started(tmp_path)
    before = h.clock.now
    h.clock.now += 1
    fail(h, GPU2_WEBUI, h.config["fall"], reason="http_502")
    assert h.checker.update() is True
    out = h.clock.now
    _doc, servers = state(h)
    assert servers[("webui", "10.0.0.2:7860")]["applied"] is None  # decided, not yet served
    assert servers[("webui", "10.0.0.1:7860")]["applied"] == before  # unchanged verdicts keep theirs
    h.clock.now += 0.05
    assert h.checker.confirm() is False  # nginx's old workers still accept
    h.clock.now += 0.2
    h.taken.add(len(h.reloads))
    assert h.checker.confirm() is True
    assert h.checker.confirm() is False  # nothing pending any more
    doc, servers = state(h)
    assert doc["time"] == h.clock.now
    assert servers[("webui", "10.0.0.2:7860")]["since"] == out
    assert servers[("webui", "10.0.0.2:7860")]["applied"] == pytest.approx(out + 0.25)
    prom = (tmp_path / "upstream_check.prom").read_text()
    assert "qwen3vl_lb_checker_reload_seconds 0.250" in prom.splitlines()


def test_checker_a_later_reload_nginx_took_covers_an_earlier_one_it_had_not_taken(tmp_path):
    h = started(tmp_path)
    fail(h, GPU2_WEBUI, h.config["fall"])
    assert h.checker.update() is True
    first = h.clock.now
    h.clock.now += 0.1
    fail(h, GPU2_VLLM, h.config["fall"])  # now its API server too
    assert h.checker.update() is True
    h.clock.now += 0.1
    h.taken.add(len(h.reloads) - 1)  # the first one alone is not enough: the pending one is the last
    assert h.checker.confirm() is False
    h.taken.add(len(h.reloads))
    assert h.checker.confirm() is True
    _doc, servers = state(h)
    assert servers[("api", "10.0.0.2:8000")]["in_rotation"] is False
    assert servers[("webui", "10.0.0.2:7860")]["applied"] == servers[("api", "10.0.0.2:8000")]["applied"]
    assert servers[("webui", "10.0.0.2:7860")]["applied"] == pytest.approx(first + 0.2)


def test_checker_a_server_back_in_before_nginx_took_its_way_out_waits_for_the_reload_that_puts_it_back(tmp_path):
    h = started(tmp_path)
    fail(h, GPU2_WEBUI, h.config["fall"])
    assert h.checker.update() is True
    h.clock.now += 0.1
    for _i in range(h.config["rise"]):
        h.checker.record(GPU2_WEBUI, True, "ok")
    assert h.checker.update() is True
    back = h.clock.now
    h.clock.now += 0.1
    h.taken.add(len(h.reloads))
    assert h.checker.confirm() is True
    _doc, servers = state(h)
    assert servers[("webui", "10.0.0.2:7860")]["in_rotation"] is True
    assert servers[("webui", "10.0.0.2:7860")]["since"] == back
    assert servers[("webui", "10.0.0.2:7860")]["applied"] == pytest.approx(back + 0.1)


def test_checker_stops_waiting_for_a_reload_nginx_never_takes_and_says_so(tmp_path):
    h = started(tmp_path)
    fail(h, GPU2_WEBUI, h.config["fall"])
    assert h.checker.update() is True
    h.clock.now += uc.RELOAD_CONFIRM_SECONDS
    assert h.checker.confirm() is False
    assert h.checker.pending is not None
    h.clock.now += 0.1
    assert h.checker.confirm() is False
    assert h.checker.pending is None
    assert [line for line in h.log if "nginx has not taken the reload" in line]
    _doc, servers = state(h)
    assert servers[("webui", "10.0.0.2:7860")]["applied"] is None


def test_checker_without_a_way_to_see_nginx_take_a_reload_leaves_applied_unknown(tmp_path):
    config = loaded(**tmp_paths(tmp_path))
    checker = uc.Checker(config, lambda: True, lambda line: None, clock=FakeClock())
    for url in checker.urls():
        checker.record(url, True, "ok")
    assert checker.update(force=True) is True
    assert checker.pending is None and checker.confirm() is False
    doc = json.loads((tmp_path / "state.json").read_text())
    assert {s["applied"] for s in doc["servers"]} == {None}


# ---------------------------------------------------------------------------------------------- reload_nginx


@contextlib.contextmanager
def hup_target(action):
    """A child process standing in for nginx's master, with SIGHUP set to `action` (SIG_DFL: a HUP ends it;
    SIG_IGN: it stays), started and ready (it says so) before the test signals it; killed afterwards."""
    name = "SIG_DFL" if action == signal.SIG_DFL else "SIG_IGN"
    code = "import signal, time; signal.signal(signal.SIGHUP, signal.%s); print('ready', flush=True); time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", code % name], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        yield child
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()


def test_reload_nginx_sends_sighup_to_the_pid_in_the_file(tmp_path):
    # the child takes SIGHUP's default action back (a shell started under nohup passes "ignored" down to
    # its children), and says so before the signal is sent
    with hup_target(signal.SIG_DFL) as child:
        (tmp_path / "nginx.pid").write_text("%d\n" % child.pid)
        token = uc.reload_nginx(str(tmp_path / "nginx.pid"))
        assert (token["master"], token["workers"]) == (child.pid, set())
        assert child.wait(timeout=10) == -signal.SIGHUP


def test_reload_nginx_without_a_usable_pid_file_returns_false(tmp_path):
    assert uc.reload_nginx(str(tmp_path / "missing.pid")) is False
    (tmp_path / "garbage.pid").write_text("nginx\n")
    assert uc.reload_nginx(str(tmp_path / "garbage.pid")) is False


def fake_proc(root, processes, uptime=1000.0):
    """A stand-in for /proc: {pid: (parent pid, command line as nginx sets it, start time in clock ticks)},
    and the seconds since boot."""
    for pid, (parent, title, start) in processes.items():
        (root / str(pid)).mkdir(parents=True)
        # the fields of stat after the name: state, ppid, 17 more, then starttime
        fields = ["S", str(parent)] + ["0"] * 17 + [str(start)]
        (root / str(pid) / "stat").write_text("%d (nginx) %s 0 0\n" % (pid, " ".join(fields)))
        (root / str(pid) / "cmdline").write_bytes(title.encode() + b"\0" * 20)
    (root / "uptime").write_text("%.2f 1234.56\n" % uptime)
    return str(root)


TICK = os.sysconf("SC_CLK_TCK")
NGINX_BEFORE = {
    1: (0, "/sbin/init", 1),
    70: (1, "nginx: master process /usr/sbin/nginx -g daemon on; master_process on;", 500 * TICK),
    71: (70, "nginx: worker process", 500 * TICK),
    72: (70, "nginx: worker process", 500 * TICK),
    90: (1, "python3 /usr/local/lib/qwen3vl-upstream-check/qwen3vl-upstream-check", 400 * TICK),
    91: (90, "nginx: worker process", 400 * TICK),  # a worker of another master is not ours
}
HUP_AT = {"master": 70, "workers": {71, 72}, "ticks": 1000 * TICK}  # what reload_nginx noted before the signal


def test_nginx_workers_are_the_masters_children_that_still_accept_with_their_start_times(tmp_path):
    proc = fake_proc(tmp_path, NGINX_BEFORE | {73: (70, "nginx: cache manager process", 500 * TICK)})
    assert uc.nginx_workers(70, proc) == {71: 500 * TICK, 72: 500 * TICK}


def test_nginx_took_a_reload_once_none_of_its_old_workers_accepts(tmp_path):
    # the master has started new workers; the old ones have not been told to quit yet
    new = {74: (70, "nginx: worker process", 1000 * TICK + 2), 75: (70, "nginx: worker process", 1000 * TICK + 2)}
    assert uc.nginx_took(HUP_AT, fake_proc(tmp_path / "both", NGINX_BEFORE | new)) is False
    # one old worker still finishes a stream: it no longer accepts; the other has gone
    draining = NGINX_BEFORE | new | {71: (70, "nginx: worker process is shutting down", 500 * TICK)}
    del draining[72]
    assert uc.nginx_took(HUP_AT, fake_proc(tmp_path / "draining", draining)) is True


def test_nginx_took_nothing_while_an_accepting_worker_is_older_than_the_signal(tmp_path):
    # a worker reload_nginx did not see (it was not in the list then) but that started before the signal
    old = NGINX_BEFORE | {71: (70, "nginx: worker process", 990 * TICK), 74: (70, "nginx: worker process", 1000 * TICK)}
    del old[72]
    token = dict(HUP_AT, workers=set())
    assert uc.nginx_took(token, fake_proc(tmp_path, old)) is False


def test_nginx_took_nothing_while_the_master_has_no_worker(tmp_path):
    token = dict(HUP_AT, workers=set())
    assert uc.nginx_took(token, fake_proc(tmp_path, {70: NGINX_BEFORE[70]})) is False


def test_reload_nginx_notes_the_workers_and_the_time_before_it_signals(tmp_path):
    proc = fake_proc(tmp_path / "proc", NGINX_BEFORE, uptime=1000.0)
    with hup_target(signal.SIG_IGN) as child:
        os.rename(os.path.join(proc, "70"), os.path.join(proc, str(child.pid)))
        for pid in (71, 72):
            stat = tmp_path / "proc" / str(pid) / "stat"
            stat.write_text(stat.read_text().replace(" S 70 ", " S %d " % child.pid))
        (tmp_path / "nginx.pid").write_text("%d\n" % child.pid)
        token = uc.reload_nginx(str(tmp_path / "nginx.pid"), proc)
        assert token == {"master": child.pid, "workers": {71, 72}, "ticks": pytest.approx(1000 * TICK)}


def test_reload_nginx_on_this_machine_reads_the_real_proc(tmp_path):
    """The real /proc: a process with no worker children, and the time since boot."""
    with hup_target(signal.SIG_IGN) as child:
        (tmp_path / "nginx.pid").write_text("%d\n" % child.pid)
        with open("/proc/uptime", encoding="ascii") as handle:
            before = float(handle.read().split()[0]) * TICK
        token = uc.reload_nginx(str(tmp_path / "nginx.pid"))
        assert token["master"] == child.pid and token["workers"] == set()
        assert before <= token["ticks"] < before + 60 * TICK
        assert uc.nginx_took(token) is False  # it has no workers


# ---------------------------------------------------------------------------------------------- probe


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # the checker hangs up after the status line


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append((self.path, self.headers.get("Host")))
        status = self.server.status()
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def http_backend(status, address="127.0.0.1"):
    """A real HTTP server on a random port answering ``status`` (an int or a callable); yields its health URL."""

    class Server(_QuietServer):
        address_family = socket.AF_INET6 if ":" in address else socket.AF_INET

    httpd = Server((address, 0), _Handler)
    httpd.status = status if callable(status) else (lambda: status)
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    host = "[%s]" % address if ":" in address else address
    try:
        yield "http://%s:%d/health" % (host, httpd.server_address[1]), httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@contextlib.contextmanager
def raw_backend(behaviour):
    """A TCP server that hands each accepted connection to ``behaviour``; yields its health URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.05)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _unused = listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                behaviour(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d/health" % listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_probe_a_200_is_ok_and_sends_a_get_for_the_path():
    with http_backend(200) as (url, httpd):
        assert asyncio.run(uc.probe(url, 2.0)) == (True, "ok", "")
    assert httpd.requests == [("/health", "127.0.0.1:%d" % httpd.server_address[1])]


def test_probe_any_2xx_is_ok():
    with http_backend(204) as (url, _unused):
        assert asyncio.run(uc.probe(url, 2.0))[:2] == (True, "ok")


def test_probe_a_503_fails_with_its_status():
    with http_backend(503) as (url, _unused):
        assert asyncio.run(uc.probe(url, 2.0)) == (False, "http_503", "HTTP 503")


def test_probe_a_closed_port_is_refused():
    ok, reason, detail = asyncio.run(uc.probe("http://127.0.0.1:%d/health" % free_port(), 2.0))
    assert (ok, reason) == (False, "refused")
    assert detail


def test_probe_a_port_that_accepts_but_never_answers_times_out():
    timeout = 0.3
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # the kernel completes the connection; nobody ever reads or answers
        url = "http://127.0.0.1:%d/health" % listener.getsockname()[1]
        started_at = time.monotonic()
        result = asyncio.run(uc.probe(url, timeout))
        elapsed = time.monotonic() - started_at
    assert result == (False, "timeout", "no answer within 0.3s")
    assert elapsed >= timeout
    assert elapsed < timeout + 2


def test_probe_a_reset_connection_is_reset():
    def reset(conn):
        conn.recv(4096)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    with raw_backend(reset) as url:
        assert asyncio.run(uc.probe(url, 2.0))[:2] == (False, "reset")


@pytest.mark.parametrize("answer", [b"SSH-2.0-OpenSSH_9.2\r\n", b"", b"HTTP/1.1 OK\r\n"])
def test_probe_what_is_not_an_http_status_line_is_an_error(answer):
    def reply(conn):
        conn.recv(4096)
        conn.sendall(answer)

    with raw_backend(reply) as url:
        ok, reason, detail = asyncio.run(uc.probe(url, 2.0))
    assert (ok, reason) == (False, "error")
    assert detail.startswith("not an HTTP answer")


def _ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_probe_an_ipv6_url():
    if not _ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    with http_backend(200, address="::1") as (url, _unused):
        assert asyncio.run(uc.probe(url, 2.0)) == (True, "ok", "")


def test_probe_an_ipv6_url_sends_a_bracketed_host_header():
    if not _ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    with http_backend(200, address="::1") as (url, httpd):
        asyncio.run(uc.probe(url, 2.0))
    assert httpd.requests == [("/health", "[::1]:%d" % httpd.server_address[1])]


def test_a_check_url_load_config_accepts_is_probed_without_raising():
    with raw_backend(lambda conn: conn.recv(4096)) as health:
        url = health.replace("/health", "/h\u00e9alth")
        raw = raw_config()
        raw["upstreams"]["api"][0]["checks"] = [check("vllm", url)]
        _unused, errors = uc.load_config(raw)
        if errors:
            assert errors[0].startswith("upstreams.api[0].checks[0].url:")
        else:
            assert asyncio.run(uc.probe(url, 1.0))[:2] == (False, "error")


def test_probe_an_endless_first_line_is_an_error_not_an_exception():
    def flood(conn):
        conn.recv(4096)
        conn.sendall(b"x" * 70000)
        time.sleep(0.2)

    with raw_backend(flood) as url:
        assert asyncio.run(uc.probe(url, 2.0))[:2] == (False, "error")


# ---------------------------------------------------------------------------------------------- run


async def wait_for_state(path, predicate, deadline=6.0):
    """Poll the state file until ``predicate(servers by id)`` holds; return them."""
    end = time.monotonic() + deadline
    servers = None
    while time.monotonic() < end:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            doc = None
        if doc is not None:
            servers = {(s["upstream"], s["server"]): s for s in doc["servers"]}
            if predicate(servers):
                return servers
        await asyncio.sleep(0.02)
    raise AssertionError("state not reached within %ss; last: %r" % (deadline, servers))


def run_config(tmp_path, flaky, good):
    raw = {
        "interval": 0.05,
        "timeout": 0.2,
        "fall": 2,
        "rise": 2,
        "upstreams": {
            "webui": [
                entry("10.0.0.1:7860", "gpu1@0", check("vllm", flaky), host="gpu1"),
                entry("10.0.0.2:7860", "gpu2@0", check("vllm", good), host="gpu2"),
            ],
            "api": [
                entry("10.0.0.1:8000", "gpu1@0", check("vllm", flaky), host="gpu1"),
                entry("10.0.0.2:8000", "gpu2@0", check("vllm", good), host="gpu2"),
            ],
        },
        **tmp_paths(tmp_path),
    }
    config, errors = uc.load_config(raw)
    assert errors == []
    return config


GPU1 = (("webui", "10.0.0.1:7860"), ("api", "10.0.0.1:8000"))


def test_run_takes_a_failing_backend_out_and_puts_it_back_with_real_probes(tmp_path):
    flaky_status = {"value": 200}
    with http_backend(200) as (good, _unused), http_backend(lambda: flaky_status["value"]) as (flaky, _unused):
        config = run_config(tmp_path, flaky, good)
        reloads, log = [], []
        checker = uc.Checker(config, lambda: reloads.append(time.monotonic()), log.append)
        conf = tmp_path / "upstreams.conf"

        async def scenario():
            stop = asyncio.Event()
            task = asyncio.ensure_future(uc.run(checker, stop))
            try:
                await wait_for_state(tmp_path / "state.json", lambda s: all(x["in_rotation"] for x in s.values()))
                assert len(reloads) == 1
                assert down_servers(conf.read_text()) == set()

                flaky_status["value"] = 503
                servers = await wait_for_state(
                    tmp_path / "state.json", lambda s: not any(s[sid]["in_rotation"] for sid in GPU1)
                )
                assert [servers[sid]["reason"] for sid in GPU1] == ["vllm_http_503", "vllm_http_503"]
                assert len(reloads) == 2
                assert down_servers(conf.read_text()) == {"10.0.0.1:7860", "10.0.0.1:8000"}

                flaky_status["value"] = 200
                await wait_for_state(tmp_path / "state.json", lambda s: all(s[sid]["in_rotation"] for sid in GPU1))
                assert len(reloads) == 3
                assert down_servers(conf.read_text()) == set()
            finally:
                stop.set()
                await asyncio.wait_for(task, 5)

        asyncio.run(scenario())
    assert sum("out of rotation" in line and "vllm_http_503" in line for line in log) == 2
    # four servers in at the start, then gpu1's two back in
    assert sum(" in rotation (" in line for line in log) == 6


def test_run_follows_the_drain_directory(tmp_path):
    with http_backend(200) as (good, _unused), http_backend(200) as (other, _unused):
        config = run_config(tmp_path, other, good)
        reloads = []
        checker = uc.Checker(config, lambda: reloads.append(1), lambda line: None)
        drain = tmp_path / "drain"

        async def scenario():
            stop = asyncio.Event()
            task = asyncio.ensure_future(uc.run(checker, stop))
            try:
                await wait_for_state(tmp_path / "state.json", lambda s: all(x["in_rotation"] for x in s.values()))
                drain.mkdir()
                (drain / "gpu2@0").write_text("")
                servers = await wait_for_state(
                    tmp_path / "state.json", lambda s: s[("api", "10.0.0.2:8000")]["reason"] == "draining"
                )
                assert servers[("webui", "10.0.0.2:7860")]["in_rotation"] is False
                assert down_servers((tmp_path / "upstreams.conf").read_text()) == {"10.0.0.2:7860", "10.0.0.2:8000"}
                (drain / "gpu2@0").unlink()
                await wait_for_state(tmp_path / "state.json", lambda s: all(x["in_rotation"] for x in s.values()))
                assert len(reloads) == 3
            finally:
                stop.set()
                await asyncio.wait_for(task, 5)

        asyncio.run(scenario())


# ---------------------------------------------------------------------------------------------- main


def write_config(tmp_path, raw):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    return str(path)


def test_main_check_config_of_a_valid_file_returns_0(tmp_path, capsys):
    assert uc.main([write_config(tmp_path, raw_config(**tmp_paths(tmp_path))), "--check-config"]) == 0
    assert capsys.readouterr().err == ""
    assert os.listdir(tmp_path) == ["config.json"]


def test_main_a_bad_config_returns_2_and_names_the_setting(tmp_path, capsys):
    path = write_config(tmp_path, raw_config(interval="fast"))
    assert uc.main([path, "--check-config"]) == 2
    err = capsys.readouterr().err
    assert path in err
    assert "interval: 'fast'" in err


def test_main_a_missing_or_unparsable_file_returns_2(tmp_path, capsys):
    assert uc.main([str(tmp_path / "missing.json"), "--check-config"]) == 2
    assert "cannot read %s" % (tmp_path / "missing.json") in capsys.readouterr().err
    (tmp_path / "broken.json").write_text("{not json")
    assert uc.main([str(tmp_path / "broken.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_main_usage(capsys):
    assert uc.main([]) == 2
    assert "CONFIG.json" in capsys.readouterr().out
    assert uc.main(["--help"]) == 0
    assert "--check-config" in capsys.readouterr().out
