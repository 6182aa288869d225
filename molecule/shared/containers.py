"""Run a shell command in a test container (docker exec), for the scenarios' tests."""

import subprocess


def sh(container, cmd, check=True):
    """``sh -c cmd`` in ``container``; with ``check``, a non-zero exit fails the test with the output."""
    out = subprocess.run(["docker", "exec", container, "sh", "-c", cmd], capture_output=True, text=True, check=False)
    if check and out.returncode != 0:
        raise AssertionError("%s: %s failed: %s %s" % (container, cmd, out.stdout, out.stderr))
    return out
