"""docker_engine: behaviour on a real systemd host with a real (nested) Docker engine."""

import hashlib
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

SCENARIO = Path(__file__).resolve().parent.parent
TINY_IMAGE = "qwen3vl-test/busybox:local"


def daemon_json(host):
    return json.loads(host.file("/etc/docker/daemon.json").content_string)


def docker_info(host):
    return json.loads(host.check_output("docker info --format '{{json .}}'"))


@pytest.fixture(scope="module")
def tiny_image(host):
    """A one-binary image imported locally: there is no registry to pull from."""
    host.run_expect(
        [0], "rm -rf /tmp/tinyroot && mkdir -p /tmp/tinyroot/bin && cp /bin/busybox /tmp/tinyroot/bin/busybox"
    )
    host.run_expect([0], f"tar -C /tmp/tinyroot -c . | docker import - {TINY_IMAGE}")
    return TINY_IMAGE


def test_service_enabled_and_running(host):
    svc = host.service("docker")
    assert svc.is_enabled
    assert svc.is_running


def test_daemon_json_has_defaults_and_keeps_foreign_keys(host):
    cfg = daemon_json(host)
    assert cfg["live-restore"] is True
    assert cfg["log-driver"] == "json-file"
    assert cfg["log-opts"] == {"max-size": "50m", "max-file": "5"}
    # written by prepare.yml before the role ran, and by a second "role" through the entry point:
    assert cfg["labels"] == ["qwen3vl.prepared=yes"]
    assert cfg["runtimes"]["molecule-runc"]["path"] == "/usr/sbin/runc"
    assert "hosts" not in cfg


def test_running_daemon_uses_the_merged_config(host):
    info = docker_info(host)
    assert info["LiveRestoreEnabled"] is True
    assert info["LoggingDriver"] == "json-file"
    assert "qwen3vl.prepared=yes" in info["Labels"]
    assert "molecule-runc" in info["Runtimes"]
    assert info["Driver"] == "overlay2"


def test_docker_run_of_locally_imported_image(host, tiny_image):
    out = host.check_output(f"docker run --rm {tiny_image} /bin/busybox echo hello-from-container")
    assert out.strip() == "hello-from-container"


def test_live_restore_keeps_containers_across_dockerd_restart(host, tiny_image):
    host.run("docker rm -f qwen3vl-live-restore")
    host.run_expect([0], f"docker run -d --name qwen3vl-live-restore {tiny_image} /bin/busybox sleep 600")
    before = json.loads(host.check_output("docker inspect --format '{{json .State}}' qwen3vl-live-restore"))
    assert before["Running"]
    host.run_expect([0], "systemctl restart docker")
    for _attempt in range(30):
        if host.run("docker info").rc == 0:
            break
        time.sleep(1)
    after = json.loads(host.check_output("docker inspect --format '{{json .State}}' qwen3vl-live-restore"))
    host.run("docker rm -f qwen3vl-live-restore")
    assert after["Running"], "container stopped when dockerd restarted: live-restore is not active"
    assert after["Pid"] == before["Pid"]
    assert after["StartedAt"] == before["StartedAt"]


def test_operator_in_docker_group(host):
    assert "docker" in host.user("operator1").groups


def _run_bad_input(extra_vars):
    env = dict(os.environ)
    cmd = [
        "ansible-playbook",
        "-i",
        env["MOLECULE_INVENTORY_FILE"],
        str(SCENARIO / "bad_input.yml"),
        "-e",
        json.dumps(extra_vars),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)


@pytest.mark.parametrize(
    "extra_vars, expected",
    [
        (
            {"docker_engine_daemon_options": {"log-opts": {"max-file": 3}}},
            "docker_engine_daemon_options['log-opts']['max-file']: expected a string, got int 3",
        ),
        (
            {"docker_engine_daemon_options": {"live-restore": "yes"}},
            "docker_engine_daemon_options['live-restore']: expected a boolean, got str 'yes'",
        ),
        (
            {"docker_engine_daemon_options": {"hosts": ["tcp://0.0.0.0:2375"]}},
            "docker_engine_daemon_options['hosts']: this key is refused",
        ),
        (
            {"docker_engine_daemon_options": {"live-restor": True}},
            "docker_engine_daemon_options['live-restor']: unknown daemon.json key",
        ),
        (
            {"docker_engine_registry_mirrors": ["mirror.example.internal"]},
            "docker_engine_registry_mirrors: mirror.example.internal is not an http(s) URL",
        ),
        (
            {"docker_engine_source": "podman"},
            "docker_engine_source must be one of: distribution, docker, got: podman",
        ),
        (
            {"docker_engine_daemon_options": ["live-restore"]},
            "docker_engine_daemon_options",
        ),
    ],
    ids=[
        "log-opts-int",
        "bool-as-string",
        "hosts-key",
        "misspelt-key",
        "mirror-not-url",
        "argspec-choice",
        "argspec-type",
    ],
)
def test_bad_input_fails_in_preflight_and_changes_nothing(host, extra_vars, expected):
    def state():
        digest = hashlib.sha256(host.file("/etc/docker/daemon.json").content).hexdigest()
        since = host.check_output("systemctl show -p ActiveEnterTimestampMonotonic --value docker")
        return digest, since

    before = state()
    result = _run_bad_input(extra_vars)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert expected in output, output
    # refused by the argument specs or the preflight assertion, before any task that changes things
    assert re.search(
        r"TASK \[qwen3vl\.ha\.docker_engine : (Validating arguments against arg spec|Check the daemon)", output
    )
    assert "TASK [qwen3vl.ha.docker_engine : Install Docker" not in output, output
    assert "changed=0" in output, output
    assert state() == before, "the host changed although preflight refused the input"
