"""Run the stand-in servers (tests/standin) as child processes on loopback, for the unit tests.

tests/unit is on sys.path (its conftest.py makes it the rootdir-side import root), so any test file
below it can `from standin_procs import ...`.
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

STANDIN = Path(__file__).resolve().parents[1] / "standin"
LOOPBACK = "127.0.0.1"


def free_port():
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def start(script, args, env, port, wait=True, *, seconds=15):
    """Start tests/standin/<script> with ``args``; with ``wait``, return once ``port`` accepts connections."""
    proc = subprocess.Popen(
        [sys.executable, str(STANDIN / script), *args],
        env=dict(os.environ, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + seconds
    while wait:
        if proc.poll() is not None:
            pytest.fail("%s exited with %s:\n%s" % (script, proc.returncode, proc.stdout.read()))
        try:
            socket.create_connection((LOOPBACK, port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail("%s did not open port %d within %d s" % (script, port, seconds))
            time.sleep(0.05)
    return proc


def stop(proc):
    """Terminate a started stand-in (kill it after 5 s) and close its output pipe."""
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.stdout.close()
