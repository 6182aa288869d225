"""webui: two stand-in instances on a real nested Docker engine, gated, ready, and rolled one at a time.

Traffic goes only to the molecule host this scenario created (its container address) and, from inside
it, to loopback. The playbook runs use the scenario's webui.yml (the webui role alone: these tests change only
its settings) with extra variables; the no-op and --check runs use converge.yml, as molecule does.
"""

import base64
import functools
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import pytest

HOST = "qwen3vl-mol-webui"
SCENARIO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SCENARIO.parent / "shared"))
from playbook_run import recap_changed, run_converge  # noqa: E402

converge = functools.partial(run_converge, SCENARIO, playbook=SCENARIO / "webui.yml")
full_converge = functools.partial(run_converge, SCENARIO)
KEY = "molecule-only-key-3f1c"
MODEL = "qwen3-vl-test"
MODEL_DIR = "/srv/models/Qwen3-VL-test"
VLLM = ["qwen3vl-vllm-0", "qwen3vl-vllm-1"]
GATE_DIR = "/run/qwen3vl-gate"
SHARE = "/srv/qwen3vl-data"  # webui_gate_mounts; a bind mount of /srv/share-backing (prepare.yml)
GATE_INTERVAL = 2  # webui_gate_interval (molecule.yml)
VLLM_START_PERIOD = 90  # webui_vllm_start_period (molecule.yml)
UI = ["qwen3vl-webui-0", "qwen3vl-webui-1"]


def _png(width=4, height=3):
    raw = b"".join(b"\x00" + b"\x80\x20\x20" * width for _row in range(height))

    def chunk(kind, data):
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    return "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + body).decode()


PNG = _png()


@pytest.fixture
def address():
    # asked for each test: the reboot test restarts the container, which may come back with another address,
    # and pytest runs the tests that take no `host` after every one that does (the reboot test among them)
    return _address()


def _address():
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", HOST],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()[0]


def _http(url, body=None, key=KEY, timeout=30):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = "Bearer " + key
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _chat_via_webui(address, instance, session="molecule"):
    return _http(
        "http://%s:%d/api/chat" % (address, 7860 + instance),
        {"session_id": session, "message": "What is in this picture?", "image": PNG},
        key=None,
    )


def containers(host):
    """name -> (id, running, started_at) for every container on the nested engine."""
    out = host.check_output("docker ps -aq | xargs -r docker inspect --format '{{json .}}'")
    result = {}
    for line in out.splitlines():
        info = json.loads(line)
        result[info["Name"].lstrip("/")] = (info["Id"], info["State"]["Running"], info["State"]["StartedAt"])
    return result


def test_two_instances_running_with_role_settings(host):
    state = containers(host)
    for name in VLLM + UI:
        assert state[name][1], name + " is not running"
    inspect = json.loads(host.check_output("docker inspect qwen3vl-vllm-1"))[0]
    args = inspect["Config"]["Cmd"]  # what follows the image's entrypoint (`vllm serve` in vLLM's image)
    assert args[0] == "/models/Qwen3-VL-test"
    assert args[args.index("--served-model-name") + 1] == MODEL
    assert args[args.index("--shutdown-timeout") + 1] == "10"
    assert json.loads(args[args.index("--limit-mm-per-prompt") + 1]) == {"image": 4, "video": 0}
    assert inspect["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert inspect["HostConfig"]["LogConfig"] == {"Type": "json-file", "Config": {"max-file": "5", "max-size": "50m"}}
    assert inspect["HostConfig"]["PortBindings"]["8000/tcp"][0]["HostPort"] == "8001"
    # the model directory is bound through the boot gate's link (instance_gate.py)
    mount = [m for m in inspect["Mounts"] if m["Destination"] == "/models/Qwen3-VL-test"]
    assert [(m["Source"], m["RW"]) for m in mount] == [(GATE_DIR + "/1.model", False)]
    assert host.file(GATE_DIR + "/1.model").linked_to == MODEL_DIR
    assert host.file(GATE_DIR + "/1.data").linked_to == "/srv/qwen3vl-data/webui"
    assert inspect["Config"]["Labels"]["qwen3vl.ha.gpu"] == "1"


def test_both_containers_run_hardened(host):
    """webui_security_opts and webui_cap_drop (defaults): no privilege gain and no capabilities, and both still
    serve (the other tests); the stand-ins are not vLLM, so this says the role asks Docker for it."""
    for name in (VLLM[0], UI[0]):
        config = json.loads(host.check_output("docker inspect " + name))[0]["HostConfig"]
        # (Docker adds label=disable itself to a container that shares the host's IPC namespace: vLLM's)
        assert "no-new-privileges:true" in config["SecurityOpt"], name
        assert config["CapDrop"] == ["ALL"] and not config["CapAdd"], name
        status = host.check_output("docker exec %s cat /proc/1/status" % name)
        assert re.search(r"^CapEff:\s+0+$", status, re.M), name
        assert re.search(r"^NoNewPrivs:\s+1$", status, re.M), name


def test_vllm_refuses_remote_image_urls(host, address):
    """No webui_vllm_allowed_media_domains: vLLM gets a name that never resolves, so a chat naming a remote
    image is refused instead of making the GPU host fetch it (here: the cloud metadata address)."""
    config = json.loads(host.check_output("docker inspect " + VLLM[0]))[0]["Config"]
    args = config["Cmd"]
    assert args[args.index("--allowed-media-domains") + 1 :][:1] == ["no-remote-media.invalid"]
    assert "VLLM_MEDIA_URL_ALLOW_REDIRECTS=0" in config["Env"]
    image = {"type": "image_url", "image_url": {"url": "http://169.254.169.254/latest/meta-data/"}}
    body = {"model": MODEL, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, image]}]}
    status, answer = _http("http://%s:8000/v1/chat/completions" % address, body)
    assert status == 400 and "is not in --allowed-media-domains" in answer, answer


def test_api_key_is_not_on_any_command_line(host):
    """The key travels in the environment, not argv, where `ps` would show it to every local user."""
    assert KEY not in host.check_output("ps -eo args")
    config = json.loads(host.check_output("docker inspect qwen3vl-vllm-0"))[0]["Config"]
    assert KEY not in json.dumps(config["Cmd"])
    assert "VLLM_API_KEY=" + KEY in config["Env"]


@pytest.mark.parametrize("instance", [0, 1])
def test_vllm_answers_with_the_key_and_refuses_without(address, instance):
    status, body = _http("http://%s:%d/v1/models" % (address, 8000 + instance))
    assert status == 200
    assert [m["id"] for m in body["data"]] == [MODEL]
    status = _http("http://%s:%d/v1/models" % (address, 8000 + instance), key="wrong")[0]
    assert status == 401


@pytest.mark.parametrize("instance", [0, 1])
def test_webui_answers_a_chat_with_an_image_and_keeps_history_on_the_shared_dir(address, instance):
    session = "instance-%d-%d" % (instance, time.time_ns())
    status, body = _chat_via_webui(address, instance, session)
    assert status == 200, body
    assert "4x3" in body["answer"], body
    # the other instance reads the history from the shared data directory
    status, history = _http("http://%s:%d/api/sessions/%s" % (address, 7860 + 1 - instance, session), key=None)
    assert status == 200
    assert [m["role"] for m in history] == ["user", "assistant"]


class Load:
    """Requests to some instances through their WebUI, from threads, with a timestamp per answer."""

    def __init__(self, address, instances):
        self.address = address
        self.instances = instances
        self.results = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in instances]

    def _run(self, instance):
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                status = _chat_via_webui(self.address, instance, "load-%d" % instance)[0]
            except OSError as exc:  # refused, reset, timed out
                status = repr(exc)
            self.results.append((started, time.monotonic(), instance, status == 200, status))
            time.sleep(0.05)

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)


def test_a_changed_setting_restarts_instances_one_at_a_time(host, address):
    before = containers(host)
    with Load(address, [0, 1]) as load:
        time.sleep(1)
        out = converge({"webui_vllm_max_model_len": 16384})[1]
        time.sleep(1)
    after = containers(host)
    for name in VLLM:
        assert after[name][0] != before[name][0], name + " was not recreated"
    for name in UI:
        assert after[name][0] == before[name][0], name + " was recreated but nothing of it changed"
    assert "16384" in json.loads(host.check_output("docker inspect qwen3vl-vllm-0"))[0]["Config"]["Cmd"]
    ok = [r for r in load.results if r[3]]
    failed = [r for r in load.results if not r[3]]
    assert ok, "no request succeeded: %s" % load.results[:5]
    # whenever one instance failed, the other answered a request that overlapped it in time
    for start, end, instance, _ok, status in failed:
        partners = [r for r in ok if r[2] != instance and r[0] <= end + 0.5 and r[1] >= start - 0.5]
        assert partners, "instance %d failed (%s) while the other did not answer either" % (instance, status)
    # the two restarts did not overlap: every failure of instance 0 comes before every failure of 1
    failures = {i: [r[0] for r in failed if r[2] == i] for i in (0, 1)}
    # for the record (README): requests sent, and failures per instance while it was being replaced
    record = {"requests": len(load.results), "failed": {i: len(failures[i]) for i in (0, 1)}}
    (SCENARIO.parents[1] / ".cache" / "molecule-webui-rolling.json").write_text(json.dumps(record))
    if failures[0] and failures[1]:
        assert max(failures[0]) < min(failures[1]), failures
    assert "did not become ready" not in out
    converge()  # back to the scenario's settings (both are rolled once more)


def test_a_change_to_one_instance_leaves_the_other_answering(host, address):
    """Instance 1 gets its own copy of the model; instance 0, under load all along, must not fail once."""
    host.run_expect([0], "rm -rf /srv/models/copy && cp -a %s /srv/models/copy" % MODEL_DIR)
    before = containers(host)
    with Load(address, [0]) as load:
        time.sleep(1)
        converge({"webui_instances": [{"gpu": 0}, {"gpu": 1, "model_dir": "/srv/models/copy"}]})
        time.sleep(1)
    after = containers(host)
    assert after["qwen3vl-vllm-0"][0] == before["qwen3vl-vllm-0"][0]
    assert after["qwen3vl-vllm-1"][0] != before["qwen3vl-vllm-1"][0]
    assert len(load.results) > 10
    assert [r for r in load.results if not r[3]] == []
    converge()  # back to the scenario's settings (instance 1 is recreated once more)


def _task_output(out, name):
    """The lines ansible printed for the task whose name starts with ``name``."""
    return out.split("webui : %s" % name, 1)[1].split("\nTASK [", 1)[0]


def test_second_converge_changes_nothing_and_check_mode_is_clean():
    out = full_converge()[1]
    assert recap_changed(out, HOST) == 0, out[-3000:]
    # the image tarball is not hashed or copied again: its name, size and modification time are recorded
    copy = _task_output(out, "Copy the image tarballs that changed")
    assert "skipping: [%s]" % HOST in copy and "ok: [" not in copy, copy
    out = full_converge(check=True)[1]
    assert recap_changed(out, HOST) == 0, out[-3000:]


def test_a_tarball_touched_on_the_controller_is_compared_again_and_not_reloaded():
    """A new modification time on the controller makes the role compare the tarball's contents again (the same
    bytes: nothing copied, nothing loaded); the record on the host takes the new time."""
    archive = SCENARIO.parents[1] / ".cache" / "images" / "qwen3vl-standin-images.tar"
    os.utime(archive)
    out = converge()[1]
    copy = _task_output(out, "Copy the image tarballs that changed")
    assert "ok: [%s]" % HOST in copy, copy
    assert "skipping" in _task_output(out, "Load the tarballs that changed"), out[-3000:]
    assert "changed: [%s]" % HOST in _task_output(out, "Keep what runs where on the host"), out[-3000:]
    assert recap_changed(out, HOST) == 1, out[-3000:]  # only the record, with the new time


def test_corrupted_model_blocks_only_its_instance(host, address):
    host.run_expect(
        [0],
        "rm -rf /srv/models/bad && cp -a %s /srv/models/bad && "
        "printf 'X' | dd of=/srv/models/bad/model-00002-of-00002.safetensors bs=1 seek=4096 conv=notrunc" % MODEL_DIR,
    )
    host.run_expect([0], "docker rm -f qwen3vl-vllm-1")
    before = containers(host)
    plan = {"webui_instances": [{"gpu": 0}, {"gpu": 1, "model_dir": "/srv/models/bad"}]}
    out = converge(plan)[1]
    assert "model checksum failed for /srv/models/bad" in out
    assert "model-00002-of-00002.safetensors" in out
    after = containers(host)
    assert "qwen3vl-vllm-1" not in after, "a blocked instance was started"
    assert after["qwen3vl-vllm-0"][0] == before["qwen3vl-vllm-0"][0]
    assert _chat_via_webui(address, 0)[0] == 200
    # the same with webui_blocked_action=fail: the host fails before anything changes
    rc, out = converge(dict(plan, webui_blocked_action="fail"), expect_rc=None)
    assert rc != 0
    assert "qwen3vl-vllm-1 may not start" in out
    assert recap_changed(out, HOST) == 0
    converge()
    assert containers(host)["qwen3vl-vllm-1"][1]


def test_a_tampered_share_cannot_vouch_for_itself_with_the_controllers_manifest(host, address, tmp_path):
    """Instance 1's model directory is damaged and its SHA256SUMS rewritten to match (what anyone who can write
    the share can do). With webui_model_manifest_src, the check uses the controller's manifest: instance 1 is
    blocked, instance 0 (intact weights) keeps running, and the boot gate checks against the controller's copy."""
    manifest = tmp_path / "Qwen3-VL-test.sha256"
    manifest.write_text(host.file(MODEL_DIR + "/SHA256SUMS").content_string)
    host.run_expect(
        [0],
        "rm -rf /srv/models/tampered && cp -a %s /srv/models/tampered && cd /srv/models/tampered && "
        "printf 'X' | dd of=model-00002-of-00002.safetensors bs=1 seek=4096 conv=notrunc && "
        "awk '!/^#/ {print $2}' SHA256SUMS | xargs sha256sum > /tmp/sums && mv /tmp/sums SHA256SUMS" % MODEL_DIR,
    )
    host.run_expect([0], "docker rm -f qwen3vl-vllm-1")
    before = containers(host)
    plan = {
        "webui_instances": [{"gpu": 0}, {"gpu": 1, "model_dir": "/srv/models/tampered"}],
        "webui_model_manifest_src": str(manifest),
    }
    out = converge(plan)[1]
    assert "model checksum failed for /srv/models/tampered" in out, out[-3000:]
    after = containers(host)
    assert "qwen3vl-vllm-1" not in after, "the tampered instance was started"
    assert after["qwen3vl-vllm-0"][0] == before["qwen3vl-vllm-0"][0]
    assert _chat_via_webui(address, 0)[0] == 200
    copy = host.file("/etc/qwen3vl/model-manifest.sha256")
    assert (copy.user, copy.mode) == ("root", 0o644) and copy.content_string == manifest.read_text()
    gate = json.loads(host.file("/etc/qwen3vl/instance-gate.json").content_string)
    # both instances stay in the gate's care (weights it checks again at every boot), against the controller's copy
    assert {i["id"]: i["manifest"] for i in gate["instances"]} == dict.fromkeys(["0", "1"], copy.path)
    converge()
    assert containers(host)["qwen3vl-vllm-1"][1]


def test_unhealthy_gpu_blocks_only_its_instance(host, address):
    host.run_expect([0], "docker rm -f qwen3vl-vllm-1")
    args = {
        "backend": "nvidia_smi",
        "nvidia_smi_path": "/opt/qwen3vl-test/bin/nvidia-smi-standin-h100_2x_gpu1_dbe",
        "xid_source": "none",
    }
    out = converge({"webui_gpu_health_args": args})[1]
    assert "GPU 1 is unhealthy" in out
    assert "qwen3vl-vllm-1" not in containers(host)
    assert _chat_via_webui(address, 0)[0] == 200
    converge()
    assert containers(host)["qwen3vl-vllm-1"][1]


def test_readiness_timeout_fails_with_the_container_log(host):
    host.run_expect([0], "docker rm -f qwen3vl-vllm-1")
    env = {"HF_HUB_OFFLINE": "1", "STANDIN_STARTUP_DELAY": "60", "STANDIN_TOKEN_DELAY": "0.01"}
    rc, out = converge({"webui_vllm_env": env, "webui_vllm_start_period": 5}, expect_rc=None)
    assert rc != 0
    assert "qwen3vl-vllm-0 did not become ready" in out or "qwen3vl-vllm-1 did not become ready" in out
    assert "loading model weights" in out.lower()
    converge()


BAD_INPUT = [
    ({"webui_gpus": [0, 5]}, "webui_gpus[1]: GPU index 5 does not exist on this host"),
    (
        {"webui_instances": [{"gpu": 0}, {"gpu": 1, "vllm_port": 8000}]},
        "webui_instances[1].vllm_port: port 8000 is already used by webui_instances[0] (vllm_port)",
    ),
    ({"webui_model_dir": "/srv/models/missing"}, "webui_model_dir: /srv/models/missing does not exist"),
    ({"webui_vllm_extra_args": ["--port", "9000"]}, "webui_vllm_extra_args[0]: '--port' collides with --port"),
    ({"webui_vllm_env": {"VLLM_API_KEY": "x"}}, "webui_vllm_env: VLLM_API_KEY is set by the role"),
    ({"webui_blocked_action": "ignore"}, "webui_blocked_action"),
    ({"webui_vllm_api_key": ""}, "webui_vllm_api_key: empty"),
]


@pytest.mark.parametrize(("extra", "message"), BAD_INPUT, ids=[case[1].split(":")[0] for case in BAD_INPUT])
def test_bad_input_fails_in_preflight_and_changes_nothing(host, extra, message):
    before = containers(host)
    rc, out = converge(extra, expect_rc=None)
    assert rc != 0
    assert message in out, out[-3000:]
    assert recap_changed(out, HOST) == 0
    assert containers(host) == before


def _wait(what, predicate, timeout, step=0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(step)
    raise AssertionError("not within %ss: %s" % (timeout, what))


def _in_host(command, check=False):
    return subprocess.run(["docker", "exec", HOST, "sh", "-c", command], capture_output=True, text=True, check=check)


def _answers(address):
    try:
        return all(_http("http://%s:%d/v1/models" % (address, 8000 + i), timeout=2)[0] == 200 for i in (0, 1)) and all(
            _chat_via_webui(address, i, "after-reboot")[0] == 200 for i in (0, 1)
        )
    except OSError:
        return False


# Last of the tests that take `host` (pytest runs those that do not after them): it reboots the host. The boot
# gate (qwen3vl-instance-gate) must hold every instance back while the data share is missing - dockerd's own
# attempt to start them fails on the missing links - and start them once the share returns.
def test_a_reboot_without_the_data_share_starts_nothing_until_the_share_returns(host, address):
    session = "before-reboot-%d" % time.time_ns()
    assert _chat_via_webui(address, 0, session)[0] == 200
    subprocess.run(["docker", "restart", "-t", "120", HOST], check=True, capture_output=True)
    _wait(
        "systemd up again",
        lambda: _in_host("systemctl is-system-running").stdout.strip() in ("running", "degraded"),
        120,
    )
    _wait(
        "the gate holds both instances back for the missing share",
        lambda: _in_host("grep -c '\"mount_missing\"' %s/state.json" % GATE_DIR).stdout.strip() == "2",
        60,
    )
    time.sleep(3 * GATE_INTERVAL)  # three more rounds of the gate: still nothing may run
    running = _in_host("docker ps -q --filter label=qwen3vl.ha.role=webui", check=True).stdout.split()
    assert running == [], "containers started without the share: %s" % running
    assert _in_host("ls -A %s" % SHARE, check=True).stdout == "", "something wrote onto the bare mount point"
    journal = _in_host("journalctl -b -u qwen3vl-instance-gate --no-pager -o cat", check=True).stdout
    assert "instance 0: held back (mount_missing): not mounted: %s" % SHARE in journal, journal
    assert "instance 1: held back (mount_missing)" in journal, journal
    metric = _in_host("cat /var/lib/prometheus/node-exporter/qwen3vl_instance_gate.prom", check=True).stdout
    assert 'qwen3vl_instance_gate_open{instance="0",reason="mount_missing"} 0' in metric

    _in_host("mount --bind /srv/share-backing %s" % SHARE, check=True)
    returned = time.monotonic()
    address = _address()  # a restarted container may get another address
    # the gate's next round opens them (one interval), then the stand-in loads its model
    _wait(
        "both instances answer after the share returned", lambda: _answers(address), GATE_INTERVAL + VLLM_START_PERIOD
    )
    print("share back -> both instances answer: %.1f s" % (time.monotonic() - returned))
    journal = _in_host("journalctl -b -u qwen3vl-instance-gate --no-pager -o cat", check=True).stdout
    assert "instance 0: open, containers started" in journal and "instance 1: open, containers started" in journal
    assert _in_host("systemctl is-active qwen3vl-instance-gate").stdout.strip() == "active"
    # the history written before the reboot is on the share, and the instances read it
    status, history = _http("http://%s:%d/api/sessions/%s" % (address, 7861, session), key=None)
    assert status == 200 and [m["role"] for m in history] == ["user", "assistant"]
