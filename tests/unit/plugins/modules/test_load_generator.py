"""qwen3vl.ha.load_generator through the real ansible CLI (module_runner), against the vLLM stand-in
(tests/standin/) and a plain loopback listener that counts the connections it accepts."""

import json
import socket
import threading

import pytest
import yaml
from module_runner import run_module as run_any
from standin_procs import free_port, start, stop

from ansible_collections.qwen3vl.ha.plugins.module_utils import loadgen
from ansible_collections.qwen3vl.ha.plugins.modules import load_generator

MODEL = "Qwen3-VL-4B-Instruct"
KEY = "sk-qwen3vl-LOADGEN-5f1c2e9a7b"  # distinctive: searched for in everything the module returns or writes
PASSWORD = "pw-LOADGEN-0d3b9e"


def run_module(args, check=False):
    return run_any("qwen3vl.ha.load_generator", args, check=check)


@pytest.fixture(scope="module")
def vllm(tmp_path_factory):
    root = tmp_path_factory.mktemp("model")
    (root / "config.json").write_text('{"architectures": ["Qwen3VLForConditionalGeneration"]}\n')
    port = free_port()
    args = [str(root), "--host", "127.0.0.1", "--port", str(port), "--served-model-name", MODEL, "--api-key", KEY]
    proc = start("vllm_standin.py", args, {"STANDIN_TOKEN_DELAY": "0.01", "STANDIN_INSTANCE_NAME": "gpu1-0"}, port)
    yield "http://127.0.0.1:%d" % port
    stop(proc)


class CountingListener:
    """A real TCP listener on 127.0.0.1 that accepts connections, counts them and closes them."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn = self.sock.accept()[0]
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self):
        self.sock.close()


def test_check_mode_sends_nothing_and_writes_nothing(tmp_path):
    listener = CountingListener()
    results = tmp_path / "load.json"
    try:
        res = run_module(
            {"base_url": listener.url, "model": MODEL, "api_key": KEY, "num_requests": 5, "results_path": str(results)},
            check=True,
        )
    finally:
        listener.close()
    assert res.get("failed") is not True, res
    assert res["changed"] is False and res["msg"].startswith("check mode: nothing sent; would send concurrency")
    assert listener.accepted == 0 and not results.exists()
    assert "aggregates" not in res and KEY not in json.dumps(res)


def test_missing_results_directory_fails_before_sending(tmp_path):
    listener = CountingListener()
    try:
        res = run_module({"base_url": listener.url, "model": MODEL, "results_path": str(tmp_path / "no" / "load.json")})
    finally:
        listener.close()
    assert res["failed"] is True and res["msg"] == "results_path: directory %s does not exist" % (tmp_path / "no")
    assert listener.accepted == 0


def test_run_writes_results_and_returns_aggregates_without_secrets(vllm, tmp_path):
    results = tmp_path / "load.json"
    res = run_module(
        {
            "base_url": vllm,
            "model": MODEL,
            "api_key": KEY,
            "url_username": "drill",
            "url_password": PASSWORD,
            "api_concurrency": 2,
            "num_requests": 6,
            "results_path": str(results),
        }
    )
    assert res.get("failed") is not True, res
    assert res["changed"] is False and res["results_path"] == str(results)
    assert res["sent"] == 6 and res["stopped_by"] == "num_requests" and res["dropped"] == 0
    agg = res["aggregates"]
    assert agg["completed"] == 6 and agg["failed"] == 0 and agg["errors"] == {}
    assert agg["mean_ttft_ms"] > 0 and agg["p99_itl_ms"] > 0 and "records" not in res
    # drills run it with async: a `started` or `finished` key in its result would tell async_status the job still runs
    assert not {"started", "finished"} & set(res) and res["load_ended"] >= res["load_started"]
    assert res["msg"].startswith("sent 6 requests in ") and res["msg"].endswith(
        "6 ok, 0 failed; results in %s" % results
    )
    text = results.read_text()
    saved = json.loads(text)
    assert len(saved["records"]) == 6 and {r["backend"] for r in saved["records"]} == {"gpu1-0"}
    assert saved["aggregates"] == agg
    assert saved["config"]["api_key"] == "********" and saved["config"]["url_password"] == "********"
    for output in (text, json.dumps(res)):
        assert KEY not in output and PASSWORD not in output


def test_refused_target_fails_before_sending(tmp_path):
    results = tmp_path / "load.json"
    res = run_module({"base_url": "http://192.0.2.10:8000", "model": MODEL, "results_path": str(results)})
    assert res["failed"] is True and not results.exists()
    assert res["msg"].startswith("refusing to send load to http://192.0.2.10:8000: 192.0.2.10 is neither loopback")
    allowed = run_module(
        {"base_url": "http://192.0.2.10:8000", "model": MODEL, "allow": ["192.0.2.0/24"], "results_path": str(results)},
        check=True,
    )
    assert allowed.get("failed") is not True and "api http://192.0.2.10:8000 -> 192.0.2.10" in allowed["msg"], allowed


def test_bad_options_fail_with_every_reason(tmp_path):
    res = run_module(
        {
            "base_url": "http://127.0.0.1:8000/v1",
            "request_rate": 5,
            "api_concurrency": 2,
            "results_path": str(tmp_path / "x.json"),
        }
    )
    assert res["failed"] is True
    assert "without /v1" in res["msg"] and "in rate mode use max_outstanding" in res["msg"]
    assert "model is required" in res["msg"]


def test_documentation_matches_the_core_options():
    """DOCUMENTATION describes exactly the core's option table (plus results_path), same types and defaults."""
    documented = yaml.safe_load(load_generator.DOCUMENTATION)["options"]
    spec = {**loadgen.argument_spec(), "results_path": {"type": "path", "required": True}}
    assert sorted(documented) == sorted(spec)
    for name, option in spec.items():
        doc = documented[name]
        assert doc["type"] == option["type"], name
        assert doc.get("default") == option.get("default"), name
        assert doc.get("elements") == option.get("elements"), name
        assert bool(doc.get("required")) == bool(option.get("required")), name
