"""Run one of the collection's modules through the real `ansible` CLI (local connection) and return
its result as a dict. Module tests use this instead of calling main() so that argument parsing,
check mode and the JSON the controller sees are the real ones."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[4]


def run_module(module, args, *, check=False, diff=False, env=None, timeout=180):
    ansible = Path(sys.executable).with_name("ansible")  # the venv's ansible, activated or not
    cmd = [str(ansible), "localhost", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}"]
    cmd += ["-m", module, "-a", json.dumps(args)]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    full_env = dict(
        os.environ,
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_STDOUT_CALLBACK="json",
        ANSIBLE_LOCALHOST_WARNING="0",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
    )
    full_env.update(env or {})
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=full_env, timeout=timeout, check=False)
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        pytest.fail("no JSON from ansible: %s %s" % (proc.stdout, proc.stderr))
    return data["plays"][0]["tasks"][0]["hosts"]["localhost"]
