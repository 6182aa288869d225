"""Run a collection module on the molecule host through the real `ansible` CLI and its inventory."""

import json
import os
import subprocess

import pytest

HOST = "qwen3vl-mol-modules"


def _adhoc(module, args, become_user=None, check=False):
    cmd = ["ansible", "-i", os.environ["MOLECULE_INVENTORY_FILE"], HOST, "-m", module, "-a", json.dumps(args)]
    if become_user:
        cmd += ["--become", "--become-user", become_user]
    if check:
        cmd.append("--check")
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        pytest.fail("no JSON from ansible: %s %s" % (proc.stdout, proc.stderr))
    return data["plays"][0]["tasks"][0]["hosts"][HOST]


@pytest.fixture
def adhoc():
    return _adhoc
