"""Helpers the lab tests share (tests/lab/test_lab.py, tests/lab/test_drills.py)."""

import json
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAB_HOSTS = ["lb1", "lb2", "gpu1", "gpu2", "storage1", "monitor1"]


def sh(*cmd, timeout=1800):
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def lab_leftovers():
    containers = sh("docker", "ps", "-aq", "--filter", "label=qwen3vl.lab=true")[1]
    networks = sh("docker", "network", "ls", "-q", "--filter", "label=qwen3vl.lab=true")[1]
    volumes = sh("docker", "volume", "ls", "-q", "--filter", "name=^qwen3vl-lab-share$")[1]
    return containers.split() + networks.split() + volumes.split()


def lab_is_up():
    """Every lab host's container runs (the lab stage left it up for the drills)."""
    running = sh("docker", "ps", "--format", "{{.Names}}", "--filter", "label=qwen3vl.lab=true")[1].split()
    return all(f"qwen3vl-lab-{host}" in running for host in LAB_HOSTS)


def in_host(host, command):
    return sh("docker", "exec", f"qwen3vl-lab-{host}", "sh", "-c", command)


def rotation(lb, host):
    """{server: (in_rotation, reason)} of host's servers in lb's active health checker."""
    rc, out = in_host(lb, "cat /run/qwen3vl-upstream-check/state.json")
    if rc != 0:
        return {}
    return {s["server"]: (s["in_rotation"], s["reason"]) for s in json.loads(out)["servers"] if s["host"] == host}


def all_in_rotation(lb, host):
    servers = rotation(lb, host)
    return bool(servers) and all(state[0] for state in servers.values())


def wait_for(what, predicate, limit, step=0.2):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(step)
    raise AssertionError("not within %s s: %s" % (limit, what))
