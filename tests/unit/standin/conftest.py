"""Fixtures for the stand-in tests (helpers live in standin_testlib.py)."""

import json

import pytest
from standin_procs import free_port
from standin_testlib import LOOPBACK, VLLM, WEBUI, Proc


@pytest.fixture
def model_dir(tmp_path):
    path = tmp_path / "model"
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"architectures": ["Standin"], "max_position_embeddings": 4096}))
    return path


@pytest.fixture
def start_vllm(tmp_path, model_dir):
    """start_vllm(*flags, env={...}, wait=True) -> (Proc, port); served name `m` unless flags say otherwise."""
    procs = []

    def start(*flags, env=None, wait=True, model=None, port=None):
        port = port or free_port()
        args = [str(model or model_dir), "--host", LOOPBACK, "--port", str(port)]
        if "--served-model-name" not in flags:
            args += ["--served-model-name", "m"]
        merged = {"STANDIN_TOKEN_DELAY": "0", **(env or {})}
        proc = Proc(VLLM, [*args, *flags], merged, tmp_path / ("vllm-%d.log" % len(procs)))
        procs.append(proc)
        if wait:
            proc.wait_port(port)
        return proc, port

    yield start
    for proc in procs:
        proc.stop()


@pytest.fixture
def start_webui(tmp_path):
    """start_webui(env={...}) -> (Proc, port)."""
    procs = []

    def start(env):
        port = free_port()
        proc = Proc(WEBUI, ["--host", LOOPBACK, "--port", str(port)], env, tmp_path / ("webui-%d.log" % len(procs)))
        procs.append(proc)
        proc.wait_port(port)
        return proc, port

    yield start
    for proc in procs:
        proc.stop()
