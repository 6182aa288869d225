"""qwen3vl.ha.inference_probe through the real ansible CLI, against the vLLM and WebUI stand-ins
(tests/standin/) started as subprocesses on 127.0.0.1."""

import json
import re
import time
from pathlib import Path

import pytest
from module_runner import run_module as run_any
from standin_procs import free_port, start, stop

from ansible_collections.qwen3vl.ha.plugins.module_utils.inference_probe import tiny_png

REPO = Path(__file__).resolve().parents[4]
MODEL = "Qwen3-VL-4B-Instruct"
KEY = "sk-qwen3vl-PROBE-d41d8cd98f00"  # distinctive: searched for in everything the module returns


def run_module(args, check=False):
    return run_any("qwen3vl.ha.inference_probe", args, check=check)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("Qwen3-VL-4B-Instruct")
    (root / "config.json").write_text('{"architectures": ["Qwen3VLForConditionalGeneration"]}\n')
    return root


def start_vllm(model_dir, env=None, wait=True):
    port = free_port()
    args = [str(model_dir), "--host", "127.0.0.1", "--port", str(port), "--served-model-name", MODEL]
    args += ["--api-key", KEY, "--limit-mm-per-prompt", '{"image": 1}']
    proc = start("vllm_standin.py", args, dict({"STANDIN_TOKEN_DELAY": "0.01"}, **(env or {})), port, wait)
    return proc, "http://127.0.0.1:%d" % port


def start_webui(backend, data_dir):
    port = free_port()
    env = {
        "OPENAI_API_BASE_URL": backend + "/v1",
        "OPENAI_API_KEY": KEY,
        "MODEL_NAME": MODEL,
        "DATA_DIR": str(data_dir),
        "GRADIO_SERVER_PORT": str(port),
    }
    proc = start("webui_standin.py", ["--host", "127.0.0.1", "--port", str(port)], env, port)
    return proc, "http://127.0.0.1:%d" % port


@pytest.fixture(scope="module")
def vllm(model_dir):
    proc, url = start_vllm(model_dir)
    yield url
    stop(proc)


@pytest.fixture(scope="module")
def webui(vllm, tmp_path_factory):
    proc, url = start_webui(vllm, tmp_path_factory.mktemp("webui-data"))
    yield url
    stop(proc)


def assert_no_key(result, key=KEY):
    text = json.dumps(result)
    assert key not in text, "the API key leaked into the module's output"


def test_readiness_gate_passes(vllm, webui):
    res = run_module(
        {
            "url": vllm,
            "model": MODEL,
            "api_key": KEY,
            "wait_timeout": 30,
            "webui_url": webui,
            "webui_health_path": "/healthz",
        }
    )
    assert res.get("failed") is not True, res
    assert res["ok"] is True and res["changed"] is False
    assert res["models"] == [MODEL] and res["attempts"] == 1
    assert [(s["name"], s["ok"], s["status"]) for s in res["steps"]] == [
        ("models", True, 200),
        ("chat", True, 200),
        ("webui", True, 200),
    ]
    assert "I see a 64x64 PNG image" in res["answer"] and res["finish_reason"] == "stop"
    assert res["usage"]["completion_tokens"] > 0 and res["latency_s"] > 0 and res["ttft_s"] is None
    assert res["msg"].endswith("WebUI %s/healthz answered 200" % webui)
    assert_no_key(res)


def test_stream_in_check_mode(vllm):
    res = run_module({"url": vllm, "model": MODEL, "api_key": KEY, "stream": True}, check=True)
    assert res.get("failed") is not True, res
    assert res["ok"] is True and res["changed"] is False
    assert "64x64 PNG" in res["answer"]
    assert 0 < res["ttft_s"] < res["latency_s"]
    assert_no_key(res)


def test_waits_while_the_model_loads(model_dir):
    proc, url = start_vllm(model_dir, env={"STANDIN_STARTUP_DELAY": "3"}, wait=False)
    try:
        res = run_module({"url": url, "model": MODEL, "api_key": KEY, "wait_timeout": 20, "interval": 0.5})
    finally:
        stop(proc)
    assert res.get("failed") is not True, res
    # It was asked while the model was loading (more than one attempt) and waited the interval after each
    # failed attempt: measured from its own first attempt, not from when this test or Ansible started.
    waits = res["steps"][0]["attempts"] - 1  # the /v1/models step is the one that waits
    assert res["ok"] is True and waits >= 1
    assert res["elapsed_s"] >= waits * 0.5
    assert "(%d attempts)" % res["attempts"] in res["msg"]


def test_port_that_never_opens():
    url = "http://127.0.0.1:%d" % free_port()
    res = run_module({"url": url, "model": MODEL, "wait_timeout": 1, "interval": 0.25})
    assert res["failed"] is True and res["ok"] is False and res["attempts"] >= 4
    assert re.fullmatch(
        r"connection refused at %s, after 1(\.\d)? s \(%d attempts\)" % (url, res["attempts"]), res["msg"]
    )
    assert res["steps"][0]["status"] is None and res["models"] == []


def test_wrong_key_fails_at_once_and_is_never_shown(vllm):
    wrong = "sk-WRONG-e3b0c44298fc1c149afb"
    started = time.monotonic()
    res = run_module({"url": vllm, "model": MODEL, "api_key": wrong, "wait_timeout": 60})
    assert time.monotonic() - started < 15  # not the 60 s wait
    assert res["failed"] is True and res["attempts"] == 1
    assert res["msg"].startswith("401 Unauthorized from %s/v1/models: api_key wrong or missing" % vllm)
    assert_no_key(res, wrong)


def test_wrong_model_names_the_served_ones(vllm):
    res = run_module({"url": vllm, "model": "Qwen3-VL-8B-Instruct", "api_key": KEY})
    assert res["failed"] is True and res["models"] == [MODEL]
    assert res["msg"].startswith("model 'Qwen3-VL-8B-Instruct' not served; served: ['%s']" % MODEL)


def test_image_path_png_on_disk(vllm, tmp_path):
    image = tmp_path / "probe.png"
    image.write_bytes(tiny_png(16, 4))
    res = run_module({"url": vllm, "model": MODEL, "api_key": KEY, "image_path": str(image), "max_tokens": 6})
    assert res.get("failed") is not True, res
    assert res["answer"] == "I see a 16x4 PNG image." and res["finish_reason"] == "length"


def test_bad_image_path_fails_before_any_request(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not a picture\n")
    url = "http://127.0.0.1:%d" % free_port()  # nothing listens: the image is checked first
    res = run_module({"url": url, "model": MODEL, "image_path": str(text)})
    assert res["failed"] is True
    assert res["msg"] == "image_path %s is not a PNG or JPEG file (it starts with b'not a pi')" % text


def test_unhealthy_webui_is_reported(vllm, tmp_path):
    dead_backend = "http://127.0.0.1:%d" % free_port()
    proc, webui = start_webui(dead_backend, tmp_path)
    try:
        res = run_module(
            {
                "url": vllm,
                "model": MODEL,
                "api_key": KEY,
                "chat": False,
                "webui_url": webui,
                "webui_health_path": "/healthz",
                "wait_timeout": 1,
                "interval": 0.5,
            }
        )
    finally:
        stop(proc)
    assert res["failed"] is True and [s["ok"] for s in res["steps"]] == [True, False]
    assert res["steps"][1]["status"] == 503 and res["steps"][1]["attempts"] >= 2
    assert res["msg"].startswith("WebUI health %s/healthz returned 503: " % webui)
    assert dead_backend in res["msg"]  # the excerpt of the WebUI's 503 body names the backend it cannot reach
    assert re.search(r", after 1(\.\d)? s \(\d+ attempts\)$", res["msg"])


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            {"url": "ftp://127.0.0.1:8000"},
            "invalid options: url: 'ftp://127.0.0.1:8000' is not an http:// or https:// URL with a host",
        ),
        ({"interval": 0}, "invalid options: interval must be more than 0 seconds, got 0.0"),
        ({"headers": {"Authorization": "Bearer x"}, "api_key": KEY}, "give the key either as api_key or as"),
    ],
)
def test_argument_errors(args, words):
    full = {"url": "http://127.0.0.1:8000", "model": MODEL}
    full.update(args)
    res = run_module(full)
    assert res["failed"] is True and words in res["msg"], res["msg"]
    assert_no_key(res)
