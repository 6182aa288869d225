"""nvidia_container_toolkit: behaviour against a signed stand-in of NVIDIA's repository, with a real
(nested) Docker engine, on hosts without a GPU -- and with a faked driver/PCI view for the GPU-only
steps. The stand-in packages are built by files/build-standin-repo.sh in prepare.yml."""

import hashlib
import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest

SCENARIO = Path(__file__).resolve().parent.parent
HOST = "qwen3vl-mol-nvidia"
SKIP_HOST = "qwen3vl-mol-nvidia-skip"
PINNED = "1.17.8-1"
NEWER = "1.17.9-1"
PACKAGES = [
    "nvidia-container-toolkit",
    "nvidia-container-toolkit-base",
    "libnvidia-container-tools",
    "libnvidia-container1",
]
SOURCES = "/etc/apt/sources.list.d/nvidia-container-toolkit.sources"
KEYRING = "/etc/apt/keyrings/nvidia-container-toolkit.asc"
REPO_DIR = "/srv/nvidia-standin"
WORK_DIR = "/root/nvidia-standin"
FACT = "/etc/ansible/facts.d/qwen3vl_gpu.fact"
CDI_SPEC = "/etc/cdi/nvidia.yaml"
CDI_STAMP = "/var/lib/qwen3vl/nvidia-cdi.stamp"
BUSYBOX_IMAGE = "qwen3vl-test/busybox:local"
SMI_IMAGE = "qwen3vl-test/nvidia-smi:local"  # the scenario's nvidia_container_toolkit_verify_image
ROLE = "qwen3vl.ha.nvidia_container_toolkit"

# Stand-in nvidia-smi for the verification image: like the real one it fails unless the container
# was started with GPUs (docker run --gpus sets NVIDIA_VISIBLE_DEVICES); it lists one GPU.
NVIDIA_SMI_STANDIN = """#!/bin/busybox sh
if [ -z "$NVIDIA_VISIBLE_DEVICES" ]; then
  echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver (test stand-in)" >&2
  exit 9
fi
echo "GPU 0: NVIDIA Test Stand-in (UUID: GPU-00000000-0000-0000-0000-000000000000)"
"""


# Every test runs against the stand-in host; the skip host is reached through the skip_host fixture.
testinfra_hosts = [f"ansible://{HOST}"]


@pytest.fixture(scope="module")
def skip_host(host):
    return host.get_host(f"ansible://{SKIP_HOST}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


def sh(host, cmd, rc=0):
    result = host.run(cmd)
    assert result.rc == rc, f"{cmd}: rc={result.rc}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def installed(host, name):
    result = host.run(f"dpkg-query -W -f '${{Version}} ${{db:Status-Want}} ${{db:Status-Status}}' {name}")
    return result.stdout.split() if result.rc == 0 else None


def daemon_json(host):
    return json.loads(host.file("/etc/docker/daemon.json").content_string)


def docker_info(host):
    return json.loads(host.check_output("docker info --format '{{json .}}'"))


def run_role(extra_vars=None, tags=None, target="nvidia_standin", playbook="role_run.yml"):
    """Run a scenario playbook through the real ansible-playbook; return (rc, parsed JSON, raw)."""
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1")
    cmd = ["ansible-playbook", "-i", env["MOLECULE_INVENTORY_FILE"], str(SCENARIO / playbook)]
    cmd += ["-e", json.dumps(dict(extra_vars or {}, target=target))]
    if tags:
        cmd += ["--tags", tags]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    raw = proc.stdout + proc.stderr
    try:
        data = json.loads(proc.stdout[proc.stdout.index("{") :])
    except ValueError:
        data = {"plays": [], "stats": {}}
    return proc.returncode, data, raw


def task_results(data, host_name):
    """[(task name, result)] for one host, in the order they ran."""
    out = []
    for play in data.get("plays", []):
        for task in play["tasks"]:
            if host_name in task["hosts"]:
                # "role.fqcn : Task name" -> "Task name"
                out.append((task["task"]["name"].split(" : ", 1)[-1], task["hosts"][host_name]))
    return out


def result_of(data, host_name, name_start):
    found = [r for n, r in task_results(data, host_name) if n.startswith(name_start)]
    assert found, f"task '{name_start}' did not run for {host_name}"
    return found[-1]


def changed_tasks(data, host_name):
    return [n for n, r in task_results(data, host_name) if r.get("changed")]


# --- the repository ----------------------------------------------------------------------------


def test_deb822_source_is_nvidias_flat_layout_with_signed_by(host):
    arch = host.check_output("dpkg --print-architecture")
    fields = dict(line.split(": ", 1) for line in host.file(SOURCES).content_string.splitlines() if ": " in line)
    assert fields["Types"] == "deb"
    # the role turned NVIDIA's "$(ARCH)" into the host's architecture
    assert fields["URIs"] == f"http://127.0.0.1:8089/stable/deb/{arch}"
    assert fields["Suites"] == "/"
    assert "Components" not in fields, "a flat repository has no components"
    assert fields["Signed-By"] == KEYRING
    assert fields["Architectures"] == arch
    key = host.file(KEYRING)
    assert key.mode == 0o644 and key.user == "root"
    assert key.content_string.strip() == host.file(f"{REPO_DIR}/gpgkey").content_string.strip()
    assert key.content_string.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")


def _apt_update_only(host, sources_text, tag):
    """apt-get update with only the given deb822 source, in its own state directory."""
    tmp = f"/tmp/qwen3vl-apt-{tag}"
    sh(host, f"rm -rf {tmp} && mkdir -p {tmp}/parts {tmp}/lists/partial")
    sh(host, f"printf '%s' {shlex.quote(sources_text)} > {tmp}/parts/nvidia.sources")
    return host.run(
        "apt-get update --error-on=any -o Dir::Etc::SourceList=/dev/null"
        f" -o Dir::Etc::SourceParts={tmp}/parts -o Dir::State::Lists={tmp}/lists"
    )


def test_apt_accepts_the_repository_signature(host):
    result = _apt_update_only(host, host.file(SOURCES).content_string, "good")
    output = result.stdout + result.stderr
    assert result.rc == 0, output
    assert "InRelease" in output
    assert "NO_PUBKEY" not in output and "not signed" not in output


def test_apt_refuses_the_repository_with_another_key(host):
    sources = host.file(SOURCES).content_string.replace(KEYRING, f"{WORK_DIR}/wrong-key.asc")
    result = _apt_update_only(host, sources, "wrongkey")
    output = result.stdout + result.stderr
    assert result.rc != 0, output
    assert "NO_PUBKEY" in output, output


def test_apt_refuses_a_tampered_repository(host):
    arch = host.check_output("dpkg --print-architecture")
    copy = "/tmp/qwen3vl-tampered"
    sh(host, f"rm -rf {copy} && cp -a {REPO_DIR} {copy}")
    # change a signed line of InRelease: the signature no longer matches
    sh(host, f"sed -i 's/^Origin: .*/Origin: somebody else/' {copy}/stable/deb/{arch}/InRelease")
    sources = host.file(SOURCES).content_string.replace(
        f"http://127.0.0.1:8089/stable/deb/{arch}", f"file:{copy}/stable/deb/{arch}"
    )
    result = _apt_update_only(host, sources, "tampered")
    output = result.stdout + result.stderr
    assert result.rc != 0, output
    assert "BADSIG" in output or "invalid" in output.lower(), output


# --- the packages and the pin ------------------------------------------------------------------


def test_pinned_version_installed_and_held_while_a_newer_one_is_published(host):
    for name in PACKAGES:
        assert installed(host, name) == [PINNED, "hold", "installed"], name
        policy = host.check_output(f"apt-cache policy {name}")
        assert f"Installed: {PINNED}" in policy
        assert f"Candidate: {NEWER}" in policy, policy  # the newer one is there, and not taken
        assert "test stand-in" in host.check_output(f"dpkg-query -W -f '${{Description}}' {name}")
    upgrade = host.check_output("apt-get -s upgrade")
    assert not [line for line in upgrade.splitlines() if line.startswith("Inst ") and "nvidia" in line], upgrade


def test_version_pin_moves_all_four_packages_up_down_and_releases_the_hold(host):
    rc, data, raw = run_role({"nvidia_container_toolkit_version": NEWER})
    assert rc == 0, raw
    assert all(installed(host, n) == [NEWER, "hold", "installed"] for n in PACKAGES), raw
    # dockerd was restarted for the new hook binary
    assert "Restart dockerd for the NVIDIA runtime" in changed_tasks(data, HOST)

    rc, data, raw = run_role({"nvidia_container_toolkit_version": PINNED})
    assert rc == 0, raw
    assert all(installed(host, n) == [PINNED, "hold", "installed"] for n in PACKAGES), "downgrade to the pin"

    # no version: the role's hold goes, nothing is upgraded
    rc, data, raw = run_role({"nvidia_container_toolkit_version": ""})
    assert rc == 0, raw
    assert all(installed(host, n) == [PINNED, "install", "installed"] for n in PACKAGES), raw
    assert "Install the toolkit packages (all four at the pinned version when one is set)" not in changed_tasks(
        data, HOST
    )

    rc, data, raw = run_role()  # back to the scenario's pin
    assert rc == 0, raw
    assert all(installed(host, n) == [PINNED, "hold", "installed"] for n in PACKAGES)


def test_key_from_content_gives_the_same_keyring_and_changes_nothing(host):
    key = host.file(f"{REPO_DIR}/gpgkey").content_string
    rc, data, raw = run_role(
        {
            "nvidia_container_toolkit_repo_key_content": key,
            "nvidia_container_toolkit_repo_key_url": "http://127.0.0.1:9/unused",
        }
    )
    assert rc == 0, raw
    assert data["stats"][HOST]["changed"] == 0, changed_tasks(data, HOST)
    assert result_of(data, HOST, "Fetch the repository key").get("skipped")


@pytest.mark.parametrize(
    "key_url, expected",
    [
        ("http://127.0.0.1:9/gpgkey", "HTTP status -1"),  # nothing listens there
        ("http://127.0.0.1:8089/", "content starts with"),  # an HTML directory listing, not a key
    ],
    ids=["unreachable", "not-a-key"],
)
def test_key_that_cannot_be_fetched_fails_with_a_way_out(host, key_url, expected):
    before = host.file(KEYRING).content
    rc, data, raw = run_role({"nvidia_container_toolkit_repo_key_url": key_url})
    assert rc != 0, raw
    msg = result_of(data, HOST, "Refuse a failed download")["msg"]
    assert f"Could not get the NVIDIA repository key on {HOST} from {key_url}" in msg
    assert expected in msg and "nvidia_container_toolkit_repo_key_content" in msg, msg
    assert data["stats"][HOST]["changed"] == 0, changed_tasks(data, HOST)
    assert host.file(KEYRING).content == before


# --- Docker ------------------------------------------------------------------------------------


def test_daemon_json_has_the_runtime_and_keeps_other_keys(host):
    cfg = daemon_json(host)
    assert cfg["runtimes"]["nvidia"] == {"path": "nvidia-container-runtime", "args": []}
    assert cfg["labels"] == ["qwen3vl.prepared=nvidia"]  # written by prepare.yml before any role
    assert cfg["live-restore"] is True  # docker_engine's own keys
    assert "default-runtime" not in cfg


def test_docker_knows_the_nvidia_runtime(host):
    info = docker_info(host)
    assert "nvidia" in info["Runtimes"]
    assert info["DefaultRuntime"] == "runc"
    assert "qwen3vl.prepared=nvidia" in info["Labels"]


@pytest.fixture(scope="module")
def images(host):
    """Images imported locally (no registry): busybox, and busybox with a stand-in nvidia-smi."""
    sh(host, "rm -rf /tmp/bbroot && mkdir -p /tmp/bbroot/bin && cp /bin/busybox /tmp/bbroot/bin/busybox")
    sh(host, f"tar -C /tmp/bbroot -c . | docker import - {BUSYBOX_IMAGE}")
    sh(host, "mkdir -p /tmp/bbroot/usr/bin")
    sh(host, f"printf '%s' {shlex.quote(NVIDIA_SMI_STANDIN)} > /tmp/bbroot/usr/bin/nvidia-smi")
    sh(host, "chmod 0755 /tmp/bbroot/usr/bin/nvidia-smi")
    sh(host, f"tar -C /tmp/bbroot -c . | docker import - {SMI_IMAGE}")
    return BUSYBOX_IMAGE


def test_docker_run_through_the_nvidia_runtime(host, images):
    sh(host, "rm -f /run/nvidia-container-runtime-standin.log")
    out = sh(host, f"docker run --rm --runtime nvidia {images} /bin/busybox echo hello-through-nvidia")
    assert out.strip() == "hello-through-nvidia"
    # the stand-in nvidia-container-runtime recorded the OCI calls before handing them to runc
    calls = host.file("/run/nvidia-container-runtime-standin.log").content_string
    assert " create " in f" {calls} ", calls


def test_the_role_never_runs_nvidia_ctk_runtime_configure(host):
    log = host.file("/run/nvidia-ctk-standin.log")
    calls = log.content_string.splitlines() if log.exists else []
    assert not [c for c in calls if c.startswith("runtime")], calls


# --- the GPU fact --------------------------------------------------------------------------------


def test_gpu_fact_is_an_executable_reporting_no_gpu(host, skip_host):
    for h in (host, skip_host):
        fact = h.file(FACT)
        assert fact.mode == 0o755 and fact.user == "root"
        data = json.loads(h.check_output(FACT))
        assert data["has_gpu"] is False
        assert data["gpu_count"] == 0 and data["gpus"] == []
        assert data["pci_gpu_count"] == 0 and data["pci_devices"] == []
        assert data["driver_loaded"] is False
        # and as Ansible sees it at fact gathering
        local = h.ansible("setup", "filter=ansible_local")["ansible_facts"]["ansible_local"]
        assert local["qwen3vl_gpu"]["gpu_count"] == 0
        assert local["qwen3vl_gpu"]["has_gpu"] is False


def test_gpu_fact_reads_driver_and_pci_views(host):
    """The fact script on a made-up /proc and /sys: GPUs from the driver, display/3D functions of
    vendor 0x10de from PCI (not NVSwitch, not other vendors), JSON-safe strings."""
    root = "/tmp/qwen3vl-fact-root"
    gpu = f"{root}/proc/driver/nvidia/gpus/0000:3b:00.0"
    pci = f"{root}/sys/bus/pci/devices"
    sh(host, f"rm -rf {root} && mkdir -p {gpu} {pci}/0000:3b:00.0 {pci}/0000:3c:00.0 {pci}/0000:00:02.0")
    sh(host, f"printf 'Model: \\t\\t NVIDIA H100 \"80GB\"\\nGPU UUID: \\t GPU-1234\\n' > {gpu}/information")
    sh(
        host,
        f"echo 'NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar 5 2024' > {root}/proc/driver/nvidia/version",
    )
    for address, vendor, cls in (
        ("0000:3b:00.0", "0x10de", "0x030200"),  # H100: 3D controller
        ("0000:3c:00.0", "0x10de", "0x068000"),  # NVSwitch: a bridge, not a GPU
        ("0000:00:02.0", "0x8086", "0x030000"),  # another vendor's VGA
    ):
        sh(
            host,
            f"echo {vendor} > {pci}/{address}/vendor && echo {cls} > {pci}/{address}/class && echo 0x2330 > {pci}/{address}/device",
        )
    data = json.loads(sh(host, f"QWEN3VL_GPU_FACT_ROOT={root} {FACT}"))
    assert data["has_gpu"] is True and data["driver_loaded"] is True
    assert data["driver_version"] == "550.54.15"
    assert data["gpu_count"] == 1
    assert data["gpus"] == [{"bus": "0000:3b:00.0", "model": 'NVIDIA H100 "80GB"', "uuid": "GPU-1234"}]
    assert data["pci_gpu_count"] == 1
    assert data["pci_devices"] == [{"address": "0000:3b:00.0", "device": "0x2330", "class": "0x030200", "driver": ""}]


# --- GPU-only steps are skipped without a GPU --------------------------------------------------


def test_verification_and_cdi_are_skipped_without_a_gpu(host):
    rc, data, raw = run_role(tags="nvidia_container_toolkit_verify")
    assert rc == 0, raw
    assert result_of(data, HOST, "Run nvidia-smi in a container").get("skipped"), raw
    assert data["stats"][HOST]["changed"] == 0, changed_tasks(data, HOST)
    assert not host.file(CDI_SPEC).exists  # cdi_enabled is true in this scenario: GPU hosts only


def test_skip_host_changed_nothing_and_installed_nothing(skip_host):
    assert not skip_host.file(SOURCES).exists
    assert not skip_host.file(KEYRING).exists
    assert not skip_host.file("/etc/docker/daemon.json").exists
    for name in PACKAGES + ["docker.io"]:
        assert installed(skip_host, name) is None, name
    rc, data, raw = run_role(target="nvidia_skip")
    assert rc == 0, raw
    assert data["stats"][SKIP_HOST]["changed"] == 0, changed_tasks(data, SKIP_HOST)
    note = result_of(data, SKIP_HOST, "Say why nothing is done on this host")["msg"]
    assert "no NVIDIA GPU found" in note and "nvidia_container_toolkit_without_gpu=skip" in note
    assert result_of(data, SKIP_HOST, "Install the NVIDIA container toolkit").get("skipped")


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra_vars, expected",
    [
        (
            {"nvidia_container_toolkit_version": "1.17.8"},
            "nvidia_container_toolkit_version must be empty or a full apt version",
        ),
        (
            {"nvidia_container_toolkit_repo_url": "nvidia.github.io/libnvidia-container/stable/deb/amd64"},
            "nvidia_container_toolkit_repo_url must be an http(s):// or file:// URL",
        ),
        (
            {"nvidia_container_toolkit_repo_key_url": "ftp://example.invalid/gpgkey"},
            "nvidia_container_toolkit_repo_key_url must be",
        ),
        (
            {"nvidia_container_toolkit_repo_key_content": "not a key"},
            "nvidia_container_toolkit_repo_key_content must be an ASCII-armoured key",
        ),
        (
            {"nvidia_container_toolkit_cdi_spec_path": "etc/cdi/nvidia"},
            "nvidia_container_toolkit_cdi_spec_path must be an absolute path",
        ),
        (
            {"nvidia_container_toolkit_without_gpu": "sometimes"},
            "nvidia_container_toolkit_without_gpu must be one of: skip, install, fail, got: sometimes",
        ),
        ({"nvidia_container_toolkit_verify_pull": "if-needed"}, "nvidia_container_toolkit_verify_pull must be one of"),
        ({"nvidia_container_toolkit_cdi_enabled": "perhaps"}, "nvidia_container_toolkit_cdi_enabled"),
        (
            {"nvidia_container_toolkit_default_runtime": True},
            f"nvidia_container_toolkit_default_runtime is true for {HOST}, which has no NVIDIA GPU",
        ),
        ({"nvidia_container_toolkit_without_gpu": "fail"}, f"{HOST} has no NVIDIA GPU"),
    ],
    ids=[
        "version-without-revision",
        "repo-url-no-scheme",
        "key-url-ftp",
        "key-content-not-armoured",
        "cdi-path-relative",
        "argspec-choice",
        "argspec-pull-choice",
        "argspec-bool",
        "default-runtime-without-gpu",
        "without-gpu-fail",
    ],
)
def test_bad_input_fails_before_anything_changes(host, extra_vars, expected):
    def state():
        files = ["/etc/docker/daemon.json", SOURCES, KEYRING, FACT]
        digests = [hashlib.sha256(host.file(f).content).hexdigest() for f in files]
        selections = host.check_output("dpkg --get-selections " + " ".join(PACKAGES))
        since = host.check_output("systemctl show -p ActiveEnterTimestampMonotonic --value docker")
        return digests, selections, since

    before = state()
    rc, data, raw = run_role(extra_vars, playbook="bad_input.yml")
    assert rc != 0, raw
    assert expected in raw, raw
    ran = [result[0] for result in task_results(data, HOST)]
    assert not [
        n for n in ran if n.startswith(("Install the NVIDIA container toolkit", "Register the nvidia runtime"))
    ], ran
    assert data["stats"][HOST]["changed"] == 0, changed_tasks(data, HOST)
    assert state() == before, "the host changed although the input was refused"


# --- GPU-only steps, with a faked driver and PCI view -------------------------------------------
# /proc/driver and /sys/bus/pci/devices of the test host are covered with tmpfs mounts holding a
# made-up NVIDIA driver view; the qwen3vl_gpu fact then reports a GPU, and the role takes its GPU
# path: CDI spec through the stand-in nvidia-ctk, verification through dockerd's --gpus support
# (the stand-in nvidia-container-runtime-hook) with an image holding a stand-in nvidia-smi.


@pytest.fixture
def fake_gpu(host, images):
    """Make the host look like it has N GPUs with a loaded driver; undone afterwards."""
    mounted = []

    def make(gpus=1, driver="550.54.15", pci_only=False):
        if not mounted:
            sh(host, "mount -t tmpfs -o size=1m,mode=0755 qwen3vl-fake-driver /proc/driver")
            sh(host, "mount -t tmpfs -o size=1m,mode=0755 qwen3vl-fake-pci /sys/bus/pci/devices")
            mounted.append(True)
        sh(host, "rm -rf /proc/driver/nvidia /sys/bus/pci/devices/*")
        for i in range(gpus):
            address = f"0000:{0x3B + i:02x}:00.0"
            dev = f"/sys/bus/pci/devices/{address}"
            sh(
                host,
                f"mkdir -p {dev} && echo 0x10de > {dev}/vendor && echo 0x030200 > {dev}/class && echo 0x2330 > {dev}/device",
            )
            if not pci_only:
                gpu = f"/proc/driver/nvidia/gpus/{address}"
                sh(
                    host,
                    f"mkdir -p {gpu} && printf 'Model: \\t NVIDIA Fake\\nGPU UUID: \\t GPU-fake-{i}\\n' > {gpu}/information",
                )
        if not pci_only:
            sh(
                host,
                f"echo 'NVRM version: NVIDIA UNIX x86_64 Kernel Module  {driver}  fake' > /proc/driver/nvidia/version",
            )

    yield make
    if mounted:
        host.run("umount /proc/driver; umount /sys/bus/pci/devices")
    host.run(f"rm -f {CDI_SPEC} {CDI_STAMP}")


def test_gpu_host_gets_a_cdi_spec_and_a_passing_verification(host, fake_gpu):
    fake_gpu(gpus=1)
    sh(host, "rm -f /run/nvidia-container-runtime-hook-standin.log")
    rc, data, raw = run_role()
    assert rc == 0, raw
    check = result_of(data, HOST, "Check what the verification container saw")
    assert "saw 1 of 1 GPU(s)" in check["msg"], check
    # dockerd ran the NVIDIA prestart hook for --gpus, so it had found the hook binary at its start
    assert "prestart" in host.file("/run/nvidia-container-runtime-hook-standin.log").content_string
    spec = host.file(CDI_SPEC).content_string
    assert "kind: nvidia.com/gpu" in spec and "550.54.15" in spec
    assert "driver=550.54.15" in host.file(CDI_STAMP).content_string
    assert "gpus=GPU-fake-0" in host.file(CDI_STAMP).content_string

    rc, data, raw = run_role()  # nothing changed: the spec is not regenerated
    assert rc == 0, raw
    assert data["stats"][HOST]["changed"] == 0, changed_tasks(data, HOST)

    fake_gpu(gpus=1, driver="560.35.03")  # a driver upgrade regenerates the spec
    rc, data, raw = run_role()
    assert rc == 0, raw
    assert changed_tasks(data, HOST) == [
        "Generate the CDI spec with nvidia-ctk",
        "Remember what the CDI spec was generated for",
    ]
    assert "560.35.03" in host.file(CDI_SPEC).content_string


def test_verification_failure_names_the_command_and_its_stderr(host, fake_gpu):
    fake_gpu(gpus=1)
    rc, data, raw = run_role({"nvidia_container_toolkit_verify_image": BUSYBOX_IMAGE})  # no nvidia-smi in it
    assert rc != 0, raw
    msg = result_of(data, HOST, "Check what the verification container saw")["msg"]
    assert f"GPU verification failed on {HOST}" in msg
    assert f"--gpus all --pull never {BUSYBOX_IMAGE} nvidia-smi -L" in msg
    assert "nvidia-smi" in msg.split("stderr:", 1)[1], msg  # docker's "executable file not found" text


def test_verification_fails_when_the_container_sees_fewer_gpus(host, fake_gpu):
    fake_gpu(gpus=2)  # the stand-in nvidia-smi always lists one
    rc, data, raw = run_role()
    assert rc != 0, raw
    msg = result_of(data, HOST, "Check what the verification container saw")["msg"]
    assert "listed 1 GPU(s) where the host has 2" in msg


def test_default_runtime_on_a_gpu_host_and_back(host, fake_gpu):
    fake_gpu(gpus=1)
    rc, data, raw = run_role({"nvidia_container_toolkit_default_runtime": True})
    assert rc == 0, raw
    assert daemon_json(host)["default-runtime"] == "nvidia"
    assert docker_info(host)["DefaultRuntime"] == "nvidia"
    rc, data, raw = run_role()  # back to false: the role removes the default-runtime it set
    assert rc == 0, raw
    cfg = daemon_json(host)
    assert "default-runtime" not in cfg and "nvidia" in cfg["runtimes"] and cfg["labels"] == ["qwen3vl.prepared=nvidia"]
    assert docker_info(host)["DefaultRuntime"] == "runc"


def test_gpu_on_the_bus_without_a_driver_installs_but_warns(host, fake_gpu):
    fake_gpu(gpus=1, pci_only=True)
    rc, data, raw = run_role({"nvidia_container_toolkit_without_gpu": "fail"})  # it has a GPU: no failure
    assert rc == 0, raw
    warning = result_of(data, HOST, "Warn that the driver is not ready")["msg"]
    assert "1 NVIDIA GPU(s) on the PCI bus but the nvidia driver is not loaded" in warning
    assert result_of(data, HOST, "Run nvidia-smi in a container").get("skipped")
    assert result_of(data, HOST, "Generate the CDI spec with nvidia-ctk").get("skipped")
    assert data["stats"][HOST]["changed"] == 0, changed_tasks(data, HOST)
