"""Run a scenario's converge.yml from its testinfra tests, as molecule would, with extra variables.

Shared by the scenarios' tests (each puts molecule/shared on sys.path):
    converge = functools.partial(run_converge, SCENARIO)
"""

import json
import os
import re
import subprocess


def run_converge(scenario, extra=None, *, check=False, expect_rc=0, timeout=600, playbook=None, limit=None, tags=None):
    """ansible-playbook SCENARIO/converge.yml (or ``playbook``) on molecule's inventory, with `extra` as
    JSON (-e), on the hosts ``limit`` names (all when None), running only the roles whose tags ``tags``
    names (every role tags all its tasks with its name: a test that changes one role's settings runs that role).

    Returns (rc, stdout + stderr); with expect_rc set, asserts the exit status first.
    """
    cmd = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(playbook or scenario / "converge.yml")]
    if extra:
        cmd += ["-e", json.dumps(extra)]
    if check:
        cmd.append("--check")
    if limit:
        cmd += ["--limit", limit]
    if tags:
        cmd += ["--tags", tags]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    out = proc.stdout + proc.stderr
    if expect_rc is not None:
        assert proc.returncode == expect_rc, out[-6000:]
    return proc.returncode, out


def recap_changed(out, host=None):
    """changed= from the last PLAY RECAP: of one host, or summed over every host."""
    recap = out.rsplit("PLAY RECAP", 1)[-1]
    rows = re.findall(r"^(\S+)\s+:.*?\bchanged=(\d+)", recap, re.M)
    if host is not None:
        return [int(changed) for name, changed in rows if name == host][-1]
    return sum(int(changed) for _name, changed in rows)
