"""Run a collection module on the molecule host through the real `ansible` CLI and its inventory."""

import json
import os
import subprocess
from pathlib import Path

import pytest

HOST = "qwen3vl-mol-modules"


SCENARIO = Path(__file__).resolve().parents[1]


def _result(cmd):
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        pytest.fail("no JSON from ansible: %s %s" % (proc.stdout, proc.stderr))
    return data["plays"][0]["tasks"][0]["hosts"][HOST]


def _adhoc(module, args, become_user=None, check=False):
    cmd = ["ansible", "-i", os.environ["MOLECULE_INVENTORY_FILE"], HOST, "-m", module, "-a", json.dumps(args)]
    if become_user:
        cmd += ["--become", "--become-user", become_user]
    if check:
        cmd.append("--check")
    return _result(cmd)


def _gpu_health(args, env=None, check=False):
    """gpu_health through molecule/modules/gpu_health.yml, which can also set the task's environment."""
    extra = json.dumps({"gpu_health_args": args, "gpu_health_env": env or {}})
    cmd = [
        "ansible-playbook",
        "-i",
        os.environ["MOLECULE_INVENTORY_FILE"],
        str(SCENARIO / "gpu_health.yml"),
        "-e",
        extra,
    ]
    if check:
        cmd.append("--check")
    return _result(cmd)


@pytest.fixture
def adhoc():
    return _adhoc


@pytest.fixture
def gpu_health():
    return _gpu_health
