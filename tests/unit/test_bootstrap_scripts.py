"""The set-up scripts fail with a message a person can act on when they cannot do their job."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BOOTSTRAP_DOCKER = REPO / "tools" / "bootstrap-docker.sh"


def run(cmd, env, user=None):
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60, check=False)


@pytest.fixture
def bare_path(tmp_path):
    """A PATH with a shell and coreutils but no docker, dockerd or apt-get: a machine without them."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "env", "id", "sha256sum", "cut", "printf", "cat", "tail", "sleep", "mktemp", "rm", "pgrep"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def test_engine_without_apt_says_so(bare_path):
    proc = run(["bash", str(BOOTSTRAP_DOCKER), "engine"], env={"PATH": bare_path})
    assert proc.returncode == 1
    assert "apt-get not found" in proc.stderr
    assert "install docker.io by hand" in proc.stderr


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to drop to nobody")
def test_engine_as_non_root_says_root_is_needed(tmp_path):
    # nobody cannot reach the Docker socket, so `docker info` fails and the script would have to
    # install or start dockerd: it must refuse clearly instead of failing half-way.
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path)}
    proc = run(["bash", str(BOOTSTRAP_DOCKER), "engine"], env=env, user="65534")
    assert proc.returncode == 1
    assert "needs root" in proc.stderr, proc.stderr


def test_image_without_engine_says_so(bare_path):
    proc = run(["bash", str(BOOTSTRAP_DOCKER), "image"], env={"PATH": bare_path})
    assert proc.returncode == 1
    assert "no Docker engine answers" in proc.stderr


def test_unknown_action_is_refused(bare_path):
    proc = run(["bash", str(BOOTSTRAP_DOCKER), "everything"], env={"PATH": bare_path})
    assert proc.returncode == 1
    assert "usage:" in proc.stderr


def test_venv_with_missing_python_says_so(tmp_path):
    env = dict(os.environ, PYTHON="python-does-not-exist", QWEN3VL_VENV=str(tmp_path / "venv"))
    proc = run(["bash", str(REPO / "tools" / "bootstrap-venv.sh")], env=env)
    assert proc.returncode == 1
    assert "python-does-not-exist not found" in proc.stderr


def recipe(env):
    proc = run(["bash", str(BOOTSTRAP_DOCKER), "recipe"], env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_recipe_hash_follows_the_recipe(bare_path):
    base = recipe({"PATH": bare_path})
    assert len(base) == 16
    assert recipe({"PATH": bare_path}) == base, "the hash must be stable"
    assert recipe({"PATH": bare_path, "QWEN3VL_DEBIAN_MIRROR": "http://mirror.example.internal/debian"}) != base


@pytest.mark.skipif(
    subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0, reason="needs a Docker engine"
)
def test_built_image_carries_the_current_recipe_and_is_not_rebuilt():
    env = dict(os.environ)
    image = env.get("QWEN3VL_BASE_IMAGE", "qwen3vl-ha/systemd-debian:bookworm")
    label = subprocess.run(
        ["docker", "image", "inspect", "--format", '{{ index .Config.Labels "qwen3vl.recipe" }}', image],
        capture_output=True,
        text=True,
        check=False,
    )
    if label.returncode != 0:
        pytest.skip("base image not built yet")
    assert label.stdout.strip() == recipe(env)
    proc = run(["bash", str(BOOTSTRAP_DOCKER), "image"], env=env)
    assert proc.returncode == 0
    assert "is up to date" in proc.stderr
