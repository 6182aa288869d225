"""The load generator's core (and its CLI face), without Ansible.

The analysis helpers are checked on hand-built records. The load itself runs against the real
stand-in servers (tests/standin, subprocesses on 127.0.0.1): timing assertions are lower bounds that
follow from the stand-in's own token delay (it sleeps STANDIN_TOKEN_DELAY before each token), never
from how fast this machine is."""

import base64
import collections
import datetime
import importlib.machinery
import importlib.util
import ipaddress
import json
import math
import socket
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from standin_procs import free_port, start, stop

from ansible_collections.qwen3vl.ha.plugins.module_utils import drill_report
from ansible_collections.qwen3vl.ha.plugins.module_utils import loadgen as lg

REPO = Path(__file__).resolve().parents[4]
MODEL = "Qwen3-VL-4B-Instruct"
# The stand-in's answer for one 64x64 PNG: "I see a 64x64 PNG image." + "This answer comes from the
# test stand-in." = 6 + 7 words, one token each (its documented token rule).
ANSWER_TOKENS = 13
VLLM_NAMES = ["duration", "completed", "failed", "total_output_tokens", "request_throughput", "output_throughput"]


# -- servers ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("model")
    (root / "config.json").write_text('{"architectures": ["Qwen3VLForConditionalGeneration"]}\n')
    return root


def start_vllm(model_dir, token_delay, instance="vllm-a", args=()):
    """The vLLM stand-in on a free loopback port: (process, base URL)."""
    port = free_port()
    cmd = [str(model_dir), "--host", "127.0.0.1", "--port", str(port), "--served-model-name", MODEL, *args]
    env = {"STANDIN_TOKEN_DELAY": str(token_delay), "STANDIN_INSTANCE_NAME": instance}
    return start("vllm_standin.py", cmd, env, port), "http://127.0.0.1:%d" % port


def start_webui(backend, data_dir, instance="webui-a"):
    port = free_port()
    env = {
        "OPENAI_API_BASE_URL": backend + "/v1",
        "MODEL_NAME": MODEL,
        "DATA_DIR": str(data_dir),
        "STANDIN_INSTANCE_NAME": instance,
    }
    return start(
        "webui_standin.py", ["--host", "127.0.0.1", "--port", str(port)], env, port
    ), "http://127.0.0.1:%d" % port


@pytest.fixture
def servers():
    """Start stand-ins through ``servers(proc, url)``; every one is stopped at the end of the test."""
    procs = []

    def keep(pair):
        procs.append(pair[0])
        return pair[1]

    yield keep
    for proc in procs:
        stop(proc)  # also for one a test killed: it closes the output pipe


def config(base_url, **options):
    return lg.build_config({"base_url": base_url, "model": MODEL, **options})


# -- hand-built records ---------------------------------------------------------------------------


def rec(start, end, *, ok=True, error=None, kind="api", ttft=None, itl=(), tokens=None, **extra):
    record = dict.fromkeys(lg.RECORD_KEYS)
    record.update(start=start, end=end, ok=ok, error=None if ok else (error or "refused"), kind=kind)
    record.update(e2el=end - start, ttft=ttft, itl=list(itl), output_tokens=tokens, **extra)
    return record


def test_percentile_is_linear_interpolation_like_numpy():
    values = [1.0, 2.0, 3.0, 4.0]
    assert lg.percentile(values, 0) == 1.0 and lg.percentile(values, 100) == 4.0
    assert lg.percentile(values, 50) == pytest.approx(2.5)
    assert lg.percentile(values, 90) == pytest.approx(3.7)  # numpy.percentile([1,2,3,4], 90)
    assert lg.percentile([5.0], 99) == 5.0
    assert lg.percentile([], 50) is None


def test_aggregate_names_and_figures_as_vllm_bench_serve():
    records = [
        rec(100.0, 101.0, ttft=0.2, itl=[0.1, 0.1, 0.6], tokens=4),  # tpot = (1.0 - 0.2) / 3
        rec(100.5, 102.5, ttft=0.4, itl=[0.8], tokens=2),  # tpot = (2.0 - 0.4) / 1
        rec(101.0, 101.5, ttft=0.5, itl=[], tokens=1),  # one token: no tpot
        rec(101.5, 101.6, ok=False, error="http_502"),
        rec(102.0, 102.1, ok=False, error="refused", kind="webui"),
    ]
    agg = lg.aggregate(records, 100.0, 104.0)
    assert set(VLLM_NAMES) <= set(agg)
    for metric in lg.METRICS:
        assert {"%s_%s_ms" % (stat, metric) for stat in ("mean", "median", "std", "p90", "p99")} <= set(agg)
    assert agg["duration"] == 4.0 and agg["completed"] == 3 and agg["failed"] == 2
    assert agg["total_output_tokens"] == 7
    assert agg["request_throughput"] == pytest.approx(3 / 4.0)
    assert agg["output_throughput"] == pytest.approx(7 / 4.0)
    assert agg["mean_ttft_ms"] == pytest.approx(1000 * (0.2 + 0.4 + 0.5) / 3)
    assert agg["mean_tpot_ms"] == pytest.approx(1000 * ((0.8 / 3) + 1.6) / 2)
    assert agg["median_itl_ms"] == pytest.approx(1000 * 0.35)  # of 0.1, 0.1, 0.6, 0.8
    assert agg["mean_e2el_ms"] == pytest.approx(1000 * (1.0 + 2.0 + 0.5) / 3)
    assert agg["std_e2el_ms"] == pytest.approx(
        1000 * math.sqrt(((1.0 - 7 / 6) ** 2 + (2.0 - 7 / 6) ** 2 + (0.5 - 7 / 6) ** 2) / 3)
    )
    assert agg["errors"] == {"http_502": 1, "refused": 1}
    assert agg["per_kind"]["api"]["completed"] == 3 and agg["per_kind"]["api"]["failed"] == 1
    assert agg["per_kind"]["webui"] == {**agg["per_kind"]["webui"], "completed": 0, "failed": 1, "duration": 4.0}


def test_aggregate_counts_requests_that_started_in_the_window():
    records = [rec(99.0, 100.5), rec(100.0, 103.0), rec(101.0, 101.2), rec(102.0, 102.1)]
    agg = lg.aggregate(records, 100.0, 102.0)  # [100, 102): the second and third
    assert agg["completed"] == 2 and agg["duration"] == 2.0
    whole = lg.aggregate(records)  # bounds from the records: first start to last end
    assert whole["completed"] == 4 and whole["start"] == 99.0 and whole["end"] == 103.0 and whole["duration"] == 4.0


def test_aggregate_of_nothing_and_of_failures_only():
    empty = lg.aggregate([])
    assert empty["completed"] == 0 and empty["failed"] == 0 and empty["duration"] == 0.0
    assert empty["request_throughput"] is None and empty["mean_e2el_ms"] is None and empty["per_kind"] == {}
    failed = lg.aggregate([rec(1.0, 2.0, ok=False, error="timeout")], 0.0, 10.0)
    assert failed["completed"] == 0 and failed["failed"] == 1 and failed["request_throughput"] == 0.0
    assert failed["p99_ttft_ms"] is None and failed["mean_tpot_ms"] is None and failed["errors"] == {"timeout": 1}


def test_longest_gap():
    records = [rec(0.0, 1.0), rec(0.5, 1.5), rec(1.0, 4.0), rec(2.0, 3.0, ok=False), rec(4.0, 4.5)]
    assert lg.longest_gap(records, 0.0, 5.0) == {"seconds": 2.5, "from": 1.5, "to": 4.0}
    assert lg.longest_gap(records, 4.2, 6.0) == {"seconds": pytest.approx(1.5), "from": 4.5, "to": 6.0}
    assert lg.longest_gap([], 10.0, 12.0) == {"seconds": 2.0, "from": 10.0, "to": 12.0}  # no success at all
    assert lg.longest_gap([rec(0.0, 1.0, ok=False)], 0.0, 3.0)["seconds"] == 3.0
    with pytest.raises(ValueError, match="before start"):
        lg.longest_gap(records, 5.0, 1.0)


def test_timeline_buckets_by_start():
    records = [
        rec(100.1, 100.3),
        rec(100.2, 100.6),
        rec(100.9, 101.0, ok=False, error="reset"),
        rec(102.5, 102.6, ok=False, error="refused"),
        rec(102.6, 102.7, ok=False, error="refused"),
    ]
    rows = lg.timeline(records, bucket=1.0, origin=100.0)
    assert [row["t"] for row in rows] == [100.0, 101.0, 102.0]
    assert [row["started"] for row in rows] == [3, 0, 2]
    assert rows[0]["ok"] == 2 and rows[0]["failed"] == {"reset": 1}
    assert rows[0]["p50_e2el_ms"] == pytest.approx(300.0) and rows[0]["p95_e2el_ms"] == pytest.approx(390.0)
    assert rows[1] == {"t": 101.0, "started": 0, "ok": 0, "failed": {}, "p50_e2el_ms": None, "p95_e2el_ms": None}
    assert rows[2]["failed"] == {"refused": 2} and rows[2]["p50_e2el_ms"] is None
    assert lg.timeline([]) == []
    assert lg.timeline(records, 1.0, origin=200.0) == []  # every request before the origin
    with pytest.raises(ValueError):
        lg.timeline(records, 0)


def test_session_summary():
    records = [
        rec(1.0, 2.0, kind="webui", session_id="s-00000", backend="gpu1"),
        rec(2.0, 3.0, kind="webui", session_id="s-00000", backend="gpu2", ok=False, error="http_502"),
        rec(1.5, 2.5, kind="webui", session_id="s-00001", backend="gpu1"),
        rec(1.0, 2.0),
    ]
    assert lg.session_summary(records) == {
        "s-00000": {"turns": 2, "ok": 1, "backends": ["gpu1", "gpu2"]},
        "s-00001": {"turns": 1, "ok": 1, "backends": ["gpu1"]},
    }


def test_tpot_as_vllm_defines_it():
    assert lg.tpot(rec(0.0, 1.0, ttft=0.2, tokens=5)) == pytest.approx(0.2)
    assert lg.tpot(rec(0.0, 1.0, ttft=0.2, tokens=1)) is None
    assert lg.tpot(rec(0.0, 1.0, ttft=None, tokens=5)) is None


# -- options and safety ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"request_rate": 5, "api_concurrency": 2}, "in rate mode use max_outstanding"),
        ({"api_weight": 0.5}, "apply to request_rate"),
        ({"api_concurrency": 0}, "must be at least 1"),
        ({"request_rate": 0}, "request_rate must be more than 0"),
        ({"request_rate": 5, "api_weight": 0, "webui_weight": 0}, "not both 0"),
        ({"duration": 20, "max_duration": 10}, "must not be longer than max_duration"),
        ({"timeout": 0}, "timeout must be more than 0"),
        ({"session_prefix": "bad prefix!"}, "session_prefix must match"),
        ({"base_url": "http://127.0.0.1:8000/v1"}, "without /v1"),
        ({"base_url": "http://user:pw@127.0.0.1:8000"}, "must not hold credentials"),
        ({"base_url": "ftp://127.0.0.1"}, "http:// or https://"),
        ({"model": None}, "model is required"),
        ({"url_password": "x"}, "url_password needs url_username"),
        ({"backend_headers": ["X Bad"]}, "not an HTTP header name"),
    ],
)
def test_bad_options_are_refused_with_the_reason(options, message):
    params = {"base_url": "http://127.0.0.1:8000", "model": MODEL, **options}
    with pytest.raises(lg.LoadgenError, match="invalid options: .*" + message.replace("(", r"\(")):
        lg.build_config(params)


def test_mode_defaults():
    plain = config("http://127.0.0.1:1")
    assert (
        plain["mode"] == "concurrency" and plain["concurrency"] == {"api": 1, "webui": 0} and plain["kinds"] == ["api"]
    )
    rate = config("http://127.0.0.1:1", request_rate=3, webui_weight=1)
    assert rate["mode"] == "rate" and rate["weights"] == {"api": 0.0, "webui": 1.0} and rate["kinds"] == ["webui"]
    webui_only = lg.build_config({"base_url": "http://127.0.0.1:1", "webui_concurrency": 2})  # no model needed
    assert webui_only["kinds"] == ["webui"] and webui_only["session_prefix"].startswith("loadgen-")


def test_allowlist_entries_and_target_check():
    networks, unresolved = lg.resolve_allowlist(["192.0.2.10", "198.51.100.0/24", "localhost", "no-such-host.invalid"])
    assert unresolved == ["no-such-host.invalid"]
    assert "192.0.2.10/32" in [str(n) for n in networks] and "198.51.100.0/24" in [str(n) for n in networks]
    assert lg.check_target("http://192.0.2.10:8000", networks) == ["192.0.2.10"]  # resolves only, sends nothing
    assert lg.check_target("https://198.51.100.7", networks) == ["198.51.100.7"]
    assert lg.check_target("http://127.0.0.5:1", []) == ["127.0.0.5"]  # loopback is always allowed
    assert lg.check_target("http://[::1]:1", []) == ["::1"]
    assert lg.disallowed(["127.0.0.1", "::1", "192.0.2.11", "2001:db8::1"], networks) == ["192.0.2.11", "2001:db8::1"]
    with pytest.raises(lg.TargetRefused) as refused:
        lg.check_target("http://192.0.2.99:8000", networks)
    text = str(refused.value)
    assert "http://192.0.2.99:8000" in text and "192.0.2.99 is neither loopback nor in the allowed set" in text
    assert "127.0.0.0/8, ::1, 192.0.2.10/32, 198.51.100.0/24" in text
    with pytest.raises(lg.LoadgenError, match="cannot resolve"):
        lg.check_target("http://no-such-host.invalid", networks)


REFUSAL_SCRIPT = r"""
import json, socket, sys
sys.path.insert(0, sys.argv[1])
from ansible_collections.qwen3vl.ha.plugins.module_utils import loadgen as lg
connects = []
sys.addaudithook(lambda event, args: connects.append(str(args[1])) if event == "socket.connect" else None)
out = {}
try:
    lg.run(lg.build_config({"base_url": "http://192.0.2.10:8000", "model": "m", "num_requests": 1, "timeout": 20}))
except lg.TargetRefused as exc:
    out["refused"] = str(exc)
out["connects_refused"] = list(connects)
listener = socket.create_server(("127.0.0.1", 0))
port = listener.getsockname()[1]
result = lg.run(lg.build_config({"base_url": "http://127.0.0.1:%d" % port, "model": "m", "num_requests": 1, "timeout": 0.5}))
listener.close()
out["connects_control"] = connects[len(out["connects_refused"]):]
out["control_port"] = port
print(json.dumps(out))
"""


def test_refused_target_opens_no_socket():
    """Python's audit hook sees every socket.connect of the process: none for the refused target, one for a
    loopback listener in the same process (the control that proves the hook sees connections)."""
    proc = subprocess.run(
        [sys.executable, "-c", REFUSAL_SCRIPT, str(REPO / ".cache" / "collections")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["refused"].startswith("refusing to send load to http://192.0.2.10:8000: 192.0.2.10 is neither")
    assert out["connects_refused"] == []
    assert out["connects_control"] == ["('127.0.0.1', %d)" % out["control_port"]]


# -- load against the stand-ins -------------------------------------------------------------------


def test_streaming_measures_ttft_itl_tokens_and_backend(model_dir, servers):
    delay = 0.05
    url = servers(start_vllm(model_dir, delay, instance="vllm-a"))
    result = lg.run(config(url, api_concurrency=2, num_requests=4))
    records = result["records"]
    assert result["stopped_by"] == "num_requests" and [r["id"] for r in records] == [1, 2, 3, 4]
    for r in records:
        assert r["ok"] and r["status"] == 200 and r["error"] is None and r["kind"] == "api", r
        assert r["backend"] == "vllm-a" and r["request_id"] is None and r["session_id"] is None
        assert r["output_tokens"] == ANSWER_TOKENS and len(r["itl"]) == ANSWER_TOKENS - 1
        # the stand-in sleeps `delay` before each token: the first comes after one delay, the last after all
        assert r["ttft"] >= delay
        assert r["ttft"] + sum(r["itl"]) >= ANSWER_TOKENS * delay - 1e-3
        assert r["e2el"] >= r["ttft"] + sum(r["itl"]) - 1e-3
        assert r["end"] == pytest.approx(r["start"] + r["e2el"])
    agg = result["aggregates"]
    assert agg["completed"] == 4 and agg["failed"] == 0 and agg["total_output_tokens"] == 4 * ANSWER_TOKENS
    assert agg["mean_ttft_ms"] >= delay * 1000
    expected_tpot = [(r["e2el"] - r["ttft"]) / (ANSWER_TOKENS - 1) for r in records]
    assert agg["mean_tpot_ms"] == pytest.approx(1000 * sum(expected_tpot) / 4)
    assert agg["duration"] == pytest.approx(result["ended"] - result["started"])
    assert agg["duration"] >= max(r["end"] for r in records) - result["started"] - 1e-3
    assert agg["per_kind"]["api"]["completed"] == 4 and list(agg["per_kind"]) == ["api"]


def test_plain_json_answers_and_http_errors(model_dir, servers):
    url = servers(start_vllm(model_dir, 0.005, args=["--api-key", "sk-test-1234"]))
    good = lg.run(config(url, api_key="sk-test-1234", api_stream=False, num_requests=2))
    assert [(r["ok"], r["ttft"], r["itl"], r["output_tokens"]) for r in good["records"]] == [
        (True, None, [], ANSWER_TOKENS)
    ] * 2
    assert good["aggregates"]["mean_ttft_ms"] is None and good["aggregates"]["mean_e2el_ms"] > 0
    assert good["config"]["api_key"] == lg.MASK
    wrong = lg.run(config(url, api_key="sk-wrong", num_requests=2, error_backoff=0))
    assert [(r["ok"], r["error"], r["status"]) for r in wrong["records"]] == [(False, "http_401", 401)] * 2
    assert "Unauthorized" in wrong["records"][0]["detail"]
    assert wrong["aggregates"]["errors"] == {"http_401": 2}


def test_webui_sessions_are_readable_afterwards(model_dir, servers, tmp_path):
    backend = servers(start_vllm(model_dir, 0.01))
    webui = servers(start_webui(backend, tmp_path / "data", instance="webui-a"))
    options = {"api_concurrency": 1, "webui_concurrency": 2, "num_requests": 9, "session_turns": 3}
    cfg = config(backend, webui_base_url=webui, session_prefix="t-webui", **options)
    result = lg.run(cfg)
    webui_records = [r for r in result["records"] if r["kind"] == "webui"]
    assert webui_records and all(r["ok"] for r in result["records"]), result["records"]
    assert set(result["aggregates"]["per_kind"]) == {"api", "webui"}
    for r in webui_records:
        assert r["backend"] == "webui-a" and r["ttft"] is None and r["output_tokens"] is None
        assert r["session_id"].startswith("t-webui-") and 1 <= r["turn"] <= 3
    sessions = lg.session_summary(result["records"])
    assert sum(entry["turns"] for entry in sessions.values()) == len(webui_records)
    for session_id, entry in sessions.items():
        turns = sorted(r["turn"] for r in webui_records if r["session_id"] == session_id)
        assert turns == list(range(1, entry["turns"] + 1))  # one turn at a time, in order
        history = lg.read_session(cfg, session_id)
        assert [turn["role"] for turn in history] == ["user", "assistant"] * entry["ok"]
        assert {turn["instance"] for turn in history if turn["role"] == "assistant"} == {"webui-a"}
    with pytest.raises(lg.LoadgenError, match="HTTP 404"):
        lg.read_session(cfg, "t-webui-99999")


def test_webui_streamed_has_ttft_and_header_backend(model_dir, servers, tmp_path):
    delay = 0.02
    backend = servers(start_vllm(model_dir, delay))
    webui = servers(start_webui(backend, tmp_path / "data", instance="webui-s"))
    result = lg.run(
        lg.build_config({"base_url": webui, "webui_concurrency": 1, "num_requests": 2, "webui_stream": True})
    )
    for r in result["records"]:
        assert r["ok"] and r["backend"] == "webui-s" and r["output_tokens"] == ANSWER_TOKENS, r
        assert r["ttft"] >= delay and len(r["itl"]) == ANSWER_TOKENS - 1


def test_backend_killed_mid_run(model_dir, servers):
    """Streams open when the stand-in is killed are cut; requests after it are refused; drill_report's split tells
    them apart."""
    proc, url = start_vllm(model_dir, 0.05)
    servers((proc, url))
    cfg = config(url, api_concurrency=3, duration=2.5, error_backoff=0.05)
    result = {}
    runner = threading.Thread(target=lambda: result.update(lg.run(cfg)))
    runner.start()
    time.sleep(1.0)  # a request takes 13 x 0.05 s: three streams are open now
    killed = time.time()
    proc.kill()
    proc.wait()
    dead = time.time()
    runner.join(30)
    records = result["records"]
    split = drill_report.split_failures(records, killed, killed)
    assert len(split["in_flight"]) >= 1, records
    assert {r["error"] for r in split["in_flight"]} <= {"stream_cut", "reset"}
    assert len(split["new"]) >= 3
    assert {r["error"] for r in split["new"] if r["start"] >= dead} == {"refused"}
    assert {r["error"] for r in split["new"]} <= {"refused", "reset"}  # reset: connected as it died
    assert all(r["ok"] for r in records if r["end"] < killed)
    assert drill_report.first_answer_after(records, killed) is None
    gap = lg.longest_gap(records, result["started"], result["ended"])
    assert gap["to"] == result["ended"] and gap["from"] < killed


def test_poisson_rate_count_within_bounds(model_dir, servers):
    rate, duration = 20.0, 3.0
    url = servers(start_vllm(model_dir, 0.002, args=["--max-num-seqs", "64"]))
    result = lg.run(config(url, request_rate=rate, duration=duration, seed=7, max_outstanding=64))
    mean = rate * duration
    assert mean - 4 * math.sqrt(mean) <= result["sent"] <= mean + 4 * math.sqrt(mean)
    assert result["dropped"] == 0 and result["stopped_by"] == "duration"
    assert all(r["ok"] for r in result["records"])
    ramped = lg.run(config(url, request_rate=rate, duration=duration, ramp_up=2.0, seed=7))
    mean = rate * (duration - 2.0 / 2)  # the rate rises from 0 to 20/s over the first 2 s
    assert mean - 4 * math.sqrt(mean) <= ramped["sent"] <= mean + 4 * math.sqrt(mean)


def test_rate_mode_mixes_kinds_by_weight(model_dir, servers, tmp_path):
    backend = servers(start_vllm(model_dir, 0.002, args=["--max-num-seqs", "64"]))
    webui = servers(start_webui(backend, tmp_path / "data"))
    cfg = config(backend, webui_base_url=webui, request_rate=30, api_weight=1, webui_weight=1, num_requests=30, seed=3)
    result = lg.run(cfg)
    kinds = collections.Counter(r["kind"] for r in result["records"])
    assert result["sent"] == 30 and result["stopped_by"] == "num_requests"
    assert kinds["api"] >= 5 and kinds["webui"] >= 5  # binomial(30, 1/2): fewer than 5 is below 1 in 5000


def test_stops_by_itself_at_max_duration(model_dir, servers):
    url = servers(start_vllm(model_dir, 0.02))
    began = time.monotonic()
    result = lg.run(config(url, api_concurrency=2, max_duration=1.5))
    assert result["stopped_by"] == "max_duration" and result["sent"] >= 1
    assert time.monotonic() - began < 1.5 + lg.JOIN_GRACE + 1


def test_hung_server_is_cut_at_max_duration():
    """A listener that accepts and never answers: the requests end at max_duration, not at their 30 s timeout."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def accept():
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        began = time.monotonic()
        url = "http://127.0.0.1:%d" % listener.getsockname()[1]
        result = lg.run(config(url, api_concurrency=2, timeout=30, max_duration=1.5))
        elapsed = time.monotonic() - began
    finally:
        listener.close()
        for sock in accepted:
            sock.close()
    assert 1.5 <= elapsed < 1.5 + lg.JOIN_GRACE + 1
    assert [(r["error"], r["detail"]) for r in result["records"]] == [("other", "aborted: max_duration reached")] * 2
    assert result["aggregates"]["failed"] == 2


def make_tls_files(root):
    """A CA and a server certificate for 127.0.0.1 (cryptography, an Ansible dependency)."""

    def name(text):
        return x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, text)])

    def build(subject, issuer, public_key, serial):
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(public_key)
            .serial_number(serial)
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
        )

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = build("loadgen test CA", "loadgen test CA", ca_key.public_key(), 1)
    ca = ca.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256())
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = build("127.0.0.1", "loadgen test CA", key.public_key(), 2).add_extension(san, critical=False)
    cert = cert.sign(ca_key, hashes.SHA256())
    (root / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (root / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM) + pem_key)
    return root


class TLSHandler(BaseHTTPRequestHandler):
    """The two POSTs the generator sends, answered as vLLM (JSON completion) and the WebUI do; it notes
    the Authorization header per path. The stand-ins speak plain HTTP only, hence this server."""

    seen = collections.defaultdict(set)

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        TLSHandler.seen[self.path].add(self.headers.get("Authorization"))
        if self.path == lg.API_PATH:
            body = {
                "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
                "usage": {"completion_tokens": 1},
            }
        else:
            body = {"session_id": "x", "answer": "hi", "instance": "tls-webui"}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


def test_https_certificates_and_credentials(tmp_path):
    tls = make_tls_files(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), TLSHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(tls / "server.pem"))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = "https://127.0.0.1:%d" % server.server_address[1]
    creds = {"api_key": "sk-tls", "url_username": "drill", "url_password": "pw"}

    def both_kinds(**options):
        """One api and one webui request (two runs, so that each kind surely sends one)."""
        api = lg.run(config(url, num_requests=1, api_stream=False, **options))
        webui = lg.run(config(url, num_requests=1, webui_concurrency=1, api_concurrency=0, **options))
        return api["records"] + webui["records"]

    try:
        untrusted = both_kinds()
        trusted = both_kinds(ca_path=str(tls / "ca.pem"), **creds)
        unchecked = both_kinds(validate_certs=False)
    finally:
        server.shutdown()
        server.server_close()
    assert [r["error"] for r in untrusted] == ["other", "other"]
    assert all("CERTIFICATE_VERIFY_FAILED" in r["detail"] for r in untrusted)
    assert all(r["ok"] for r in trusted + unchecked)
    assert [r["backend"] for r in trusted] == [None, "tls-webui"]
    basic = "Basic " + base64.b64encode(b"drill:pw").decode()
    assert TLSHandler.seen[lg.API_PATH] == {"Bearer sk-tls", None}  # the bearer key to the API, nothing without it
    assert TLSHandler.seen[lg.WEBUI_CHAT_PATH] == {basic, None}  # basic auth to the WebUI


def test_write_results_is_atomic_and_json(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")
    lg.write_results(str(path), {"records": [], "n": 1})
    assert json.loads(path.read_text()) == {"records": [], "n": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]  # no temporary file left


def test_embedded_image_is_a_64px_png():
    data = base64.b64decode(lg.IMAGE_PNG_BASE64)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) == (64, 64)


# -- the CLI face ---------------------------------------------------------------------------------


def load_cli():
    loader = importlib.machinery.SourceFileLoader("loadgen_cli", str(REPO / "tools" / "loadgen"))
    spec = importlib.util.spec_from_loader("loadgen_cli", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def run_cli(*args, through_sh=False):
    """tools/loadgen with this Python, or as a user starts it (sh, then python3 on PATH)."""
    command = [str(REPO / "tools" / "loadgen")] if through_sh else [sys.executable, str(REPO / "tools" / "loadgen")]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=60, check=False)


def test_cli_allowlist_from_the_lab_inventory():
    cli = load_cli()
    allowed = cli.inventory_allowlist(lg, [str(REPO / "inventories" / "lab")])
    # lab_ipv4 of every host and the VIP; the docker container names (ansible_host) do not resolve
    assert {"172.29.72.11/32", "172.29.72.21/32", "172.29.72.100/32"} <= set(allowed)
    assert not any("qwen3vl-lab" in entry for entry in allowed)
    assert cli.host_address("172.29.72.100/24") == "172.29.72.100" and cli.host_address("lb1") == "lb1"


def test_cli_refuses_and_rejects_with_status_2():
    refused = run_cli("--base-url", "http://192.0.2.10:8000", "--model", MODEL, through_sh=True)
    assert refused.returncode == 2 and "refusing to send load to http://192.0.2.10:8000" in refused.stderr
    bad = run_cli("--base-url", "http://127.0.0.1:1", "--model", MODEL, "--request-rate", "5", "--api-concurrency", "2")
    assert bad.returncode == 2 and "in rate mode use max_outstanding" in bad.stderr
    assert run_cli("--no-such-option").returncode == 2


def test_cli_runs_prints_the_summary_and_writes_json(model_dir, servers, tmp_path):
    url = servers(start_vllm(model_dir, 0.01))
    output = tmp_path / "load.json"
    proc = run_cli("--base-url", url, "--model", MODEL, "--duration", "5.3", "--output", str(output))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == " Load Generator Result ".center(50, "=") and lines[-1] == "=" * 50
    assert lines[1].startswith("Successful requests:") and lines[2].startswith("Failed requests:")
    assert any(line.startswith("Mean TTFT (ms):") for line in lines)
    # stderr is not a terminal here: one plain progress line after 5 s
    progress = [line for line in proc.stderr.splitlines() if " sent " in line]
    assert len(progress) == 1 and progress[0].strip().startswith("5.0s sent"), proc.stderr
    saved = json.loads(output.read_text())
    assert saved["aggregates"]["completed"] == len(saved["records"]) > 0
    assert int(lines[1].split()[-1]) == saved["aggregates"]["completed"]
