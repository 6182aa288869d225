"""The local lab end to end: `tools/lab.sh up` brings up six hosts and converges site.yml; a second
converge and a --check run report changed=0; `tools/lab.sh down` leaves no container, volume or
network behind. Runs the real scripts a user runs (slow: several minutes)."""

import base64
import json
import os
import re
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "molecule" / "shared"))
sys.path.insert(0, str(REPO / "tests" / "lab"))
from labutil import all_in_rotation, in_host, lab_leftovers, rotation, sh, wait_for  # noqa: E402
from load import Load, api_chat, webui_chat  # noqa: E402

VIP = "172.29.72.100"
ROLLS = int(os.environ.get("QWEN3VL_ROLLS", "1"))
HOSTS = ["lb1", "lb2", "gpu1", "gpu2", "storage1", "monitor1"]


def recap(output):
    """{host: {ok, changed, failed, unreachable}} from the last PLAY RECAP in ansible output."""
    last = output.rsplit("PLAY RECAP", 1)[-1]
    rows = re.findall(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", last, re.M)
    return {h: dict(ok=int(o), changed=int(c), unreachable=int(u), failed=int(f)) for h, o, c, u, f in rows}


@pytest.fixture(scope="module")
def fresh_check():
    """site.yml --check on brand-new hosts (nothing installed yet), before the lab is converged."""
    sh("tools/lab.sh", "down")
    assert sh("tools/build-standin-images.sh")[0] == 0
    rc, out = sh(".venv/bin/ansible-playbook", "-i", "inventories/lab", "tests/lab/up.yml")
    assert rc == 0, out[-3000:]
    return sh(".venv/bin/ansible-playbook", "-i", "inventories/lab", "site.yml", "--check")


@pytest.fixture(scope="module")
def lab(fresh_check):
    rc, out = sh("tools/lab.sh", "up")
    yield rc, out
    if os.environ.get("QWEN3VL_KEEP_LAB") == "1":
        return  # tools/test.sh: the drills stage runs on this lab next, and takes it down
    rc_down, out_down = sh("tools/lab.sh", "down")
    assert rc_down == 0, out_down
    assert lab_leftovers() == [], "lab down left containers, networks or the share volume behind"


def test_up_converges_and_prints_summary(lab):
    rc, out = lab
    assert rc == 0, out[-4000:]
    rows = recap(out)
    assert set(rows) >= {"gpu1", "gpu2"}, out[-4000:]
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in rows.values())
    for host in HOSTS:
        assert re.search(rf"^{host}\s+172\.29\.72\.\d+\s", out, re.M), f"{host} missing from summary"
    assert re.search(r"^gpu1 .*docker=running", out, re.M)
    for host in ("gpu1", "gpu2"):
        assert re.search(rf"^{host} .*qwen3vl-vllm-0=running qwen3vl-webui-0=running", out, re.M), host


def chat_with_image(url, session_id, context=None):
    """POST the tiny PNG with a question to a WebUI's /api/chat (directly or through the VIP)."""
    png = (REPO / "tests" / "fixtures" / "images" / "tiny.png").read_bytes()
    body = json.dumps(
        {
            "session_id": session_id,
            "message": "What is this?",
            "image": "data:image/png;base64," + base64.b64encode(png).decode(),
        }
    ).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30, context=context) as resp:
        return json.loads(resp.read())


@pytest.mark.parametrize(("host", "address"), [("gpu1", "172.29.72.21"), ("gpu2", "172.29.72.22")])
def test_each_gpu_host_answers_a_chat_through_its_webui(lab, host, address):
    """The stand-in instance site.yml started: WebUI -> vLLM, with the image, as a user would call it."""
    assert lab[0] == 0
    answer = chat_with_image(f"http://{address}:7860/api/chat", "lab-" + host)
    assert answer["instance"] == f"{host}-qwen3vl-webui-0"
    assert "PNG" in answer["answer"], answer


def test_chats_through_the_vip_reach_both_gpu_hosts(lab):
    """The front door: HTTPS on the keepalived VIP, nginx spreading over both hosts' WebUIs."""
    assert lab[0] == 0
    rows = [line for line in lab[1].splitlines() if " VIP=172.29.72.100" in line]
    assert len(rows) == 1, "exactly one load balancer should hold the VIP: %s" % rows
    context = ssl._create_unverified_context()  # the lab's certificates are self-signed
    seen = set()
    for n in range(6):
        answer = chat_with_image("https://172.29.72.100/api/chat", "lab-vip-%d" % n, context)
        assert "PNG" in answer["answer"], answer
        seen.add(answer["instance"])
    assert seen == {"gpu1-qwen3vl-webui-0", "gpu2-qwen3vl-webui-0"}


def test_storage_serves_the_webui_data_share_and_gpu_hosts_have_its_fstab_entry(lab):
    """storage1 runs NFS-Ganesha; each GPU host's fstab mounts it where the WebUI keeps its data (the lab's
    kernel cannot mount NFS: nfs_client_mount_state is present, so the directory itself is local here)."""
    assert lab[0] == 0
    assert re.search(r"^storage1 .*nfs-ganesha=running", lab[1], re.M), lab[1][-2000:]
    for host in ("gpu1", "gpu2"):
        rc, fstab = sh("docker", "exec", f"qwen3vl-lab-{host}", "cat", "/etc/fstab")
        assert rc == 0, fstab
        assert re.search(
            r"^172\.29\.72\.31:/srv/qwen3vl/data\s+/mnt/qwen3vl-data\s+nfs\s+\S*_netdev,nofail\S*\s+0\s+0$", fstab, re.M
        ), fstab
        rc, out = sh("docker", "exec", f"qwen3vl-lab-{host}", "bash", "-c", "exec 3<>/dev/tcp/172.29.72.31/2049")
        assert rc == 0, f"{host} cannot reach storage1:2049: {out}"
        rc, mounts = sh(
            "docker",
            "exec",
            f"qwen3vl-lab-{host}",
            "docker",
            "inspect",
            "qwen3vl-webui-0",
            "--format",
            "{{range .Mounts}}{{.Source}} {{end}}",
        )
        # through the boot gate's link, which points at the data directory
        assert rc == 0 and "/run/qwen3vl-gate/0.data" in mounts.split(), mounts
        link = sh("docker", "exec", f"qwen3vl-lab-{host}", "readlink", "/run/qwen3vl-gate/0.data")[1]
        assert link.strip() == "/mnt/qwen3vl-data/webui", link


# (from, to, port, let in?): the firewall role on every lab host. The rest of this file shows that what must
# get through does (chats through the VIP, scrapes, probes, NFS); this shows who is refused.
FIREWALL_CASES = [
    ("lb1", "gpu1", 8000, True),
    ("lb2", "gpu2", 7860, True),
    ("monitor1", "gpu1", 8000, True),  # vLLM's /metrics
    ("monitor1", "gpu1", 7860, False),
    ("storage1", "gpu1", 8000, False),  # a host of the site that is neither a load balancer nor monitoring
    ("storage1", "gpu2", 7860, False),
    ("gpu2", "gpu1", 8000, False),
    ("lb1", "storage1", 2049, False),  # NFS only for its clients (the GPU hosts: see the test above)
    ("gpu1", "monitor1", 9090, False),  # Prometheus for the admin sources and the monitoring hosts
]
ADDRESSES = {
    "lb1": "172.29.72.11",
    "lb2": "172.29.72.12",
    "gpu1": "172.29.72.21",
    "gpu2": "172.29.72.22",
    "storage1": "172.29.72.31",
    "monitor1": "172.29.72.41",
}


@pytest.mark.parametrize(
    ("source", "target", "port", "let_in"), FIREWALL_CASES, ids=["%s->%s:%d" % c[:3] for c in FIREWALL_CASES]
)
def test_the_firewall_lets_in_only_whom_the_inventory_names(lab, source, target, port, let_in):
    assert lab[0] == 0
    rc, out = sh(
        "docker",
        "exec",
        f"qwen3vl-lab-{source}",
        "timeout",
        "5",
        "bash",
        "-c",
        "exec 3<>/dev/tcp/%s/%d" % (ADDRESSES[target], port),
    )
    assert (rc == 0) == let_in, f"{source} -> {target}:{port}: rc={rc} {out}"


def test_a_session_written_through_one_gpu_host_is_read_through_the_other(lab):
    """Session continuity (article 000 §5.2): the GPU hosts' data mount stands in for NFS with the storage host's
    exported directory itself (tests/lab/up.yml), so a chat written through gpu1's WebUI is in storage1's export
    and gpu2's WebUI answers the next turn with the whole history."""
    assert lab[0] == 0
    session = "lab-continuity-%d" % int(time.time())
    first = chat_with_image("http://172.29.72.21:7860/api/chat", session)
    assert first["instance"] == "gpu1-qwen3vl-webui-0", first
    rc, files = in_host("storage1", "ls /srv/qwen3vl/data/webui/sessions")
    assert rc == 0 and session + ".jsonl" in files.split(), files
    with urllib.request.urlopen("http://172.29.72.22:7860/api/sessions/" + session, timeout=30) as resp:
        history = json.loads(resp.read())
    text = json.dumps(history)
    assert "What is this?" in text and first["answer"] in text, text[:2000]


def test_the_lb_play_alone_reads_the_backends_from_their_hosts(lab):
    """--limit lb: no webui run in this run, so nginx_lb reads the record the webui role left on each GPU host
    (only the nginx_lb role: the load balancers' other roles have their own tests)."""
    rc, out = sh("tools/lab.sh", "converge", "--limit", "lb", "--tags", "nginx_lb")
    assert rc == 0, out[-4000:]
    rows = recap(out)
    assert set(rows) == {"lb1", "lb2"}, out[-3000:]
    assert all(r["changed"] == 0 and r["failed"] == 0 for r in rows.values()), out[-4000:]


def test_check_mode_on_new_hosts_passes(fresh_check):
    rc, out = fresh_check
    assert rc == 0, out[-4000:]
    rows = recap(out)
    assert set(rows) >= {"gpu1", "gpu2", "lb1", "lb2", "storage1"}, out[-4000:]
    assert all(r["failed"] == 0 for r in rows.values()), out[-4000:]
    assert "Docker is not installed yet on gpu1 (check mode)" in out


def test_all_six_hosts_run_systemd(lab):
    for host in HOSTS:
        state = sh("docker", "exec", f"qwen3vl-lab-{host}", "systemctl", "is-system-running")[1]
        assert state.strip() in ("running", "degraded"), f"{host}: {state}"


def test_only_the_gpu_host_with_a_change_is_rolled(lab):
    """site.yml plans on every GPU host at once and rolls out only where Docker says a container would
    change: with gpu1's WebUI stopped, gpu1 is rolled (its WebUI started again) and gpu2 ends at once."""
    assert sh("docker", "exec", "qwen3vl-lab-gpu1", "docker", "stop", "qwen3vl-webui-0")[0] == 0
    # limited to the GPU hosts and the webui role, as an operator would run a model change (the webui role's
    # documented tag; the other roles and plays have their own tests)
    rc, out = sh("tools/lab.sh", "converge", "--limit", "gpu", "--tags", "webui")
    assert rc == 0, out[-4000:]
    rows = recap(out)
    assert rows["gpu1"]["changed"] >= 1 and rows["gpu2"]["changed"] == 0, out[-4000:]
    # the rolling play, every batch of it (serial: one PLAY header per host), up to the load balancers' play
    rollout = out.split("PLAY [GPU hosts - model instances, rolled out", 1)[1].split("PLAY [Load balancers", 1)[0]
    started = re.findall(r"^changed: \[(\S+)\]", rollout.split("WebUI container - qwen3vl-webui-0]", 1)[1], re.M)
    assert started[:1] == ["gpu1"], rollout[-3000:]
    # gpu2 appears in no task of the rolling play but the one that ends it
    for task in rollout.split("TASK [")[1:]:
        if not task.startswith("A host whose plan found nothing to change is done"):
            assert "[gpu2]" not in task, task[:2000]
    state = sh("docker", "exec", "qwen3vl-lab-gpu1", "docker", "inspect", "-f", "{{.State.Running}}", "qwen3vl-webui-0")
    assert state[1].strip() == "true", state


def test_a_rolling_restart_of_every_instance_under_load_fails_no_request(lab):
    """A changed vLLM setting replaces every instance, one at a time, each drained on both load balancers
    first: API chat completions and WebUI chats through the VIP all succeed, POSTs included. (ROLL gets a
    new value each run: Docker does not count a removed variable as a change.) QWEN3VL_ROLLS=N repeats it."""
    lab_vars = REPO / "inventories" / "lab" / "group_vars" / "gpu.yml"
    key = re.search(r"^webui_vllm_api_key: (\S+)", lab_vars.read_text(), re.M).group(1)
    load = Load(VIP, [("api", api_chat(VIP, key, "Qwen3-VL-4B-Instruct")), ("webui", webui_chat(VIP))], 3)
    outs = []
    with load:
        time.sleep(2)
        t0 = time.time()
        env = {"HF_HUB_OFFLINE": "1", "STANDIN_STARTUP_DELAY": "3", "STANDIN_TOKEN_DELAY": "0.02"}
        for _i in range(ROLLS):
            roll = dict(env, ROLL="%.3f" % time.time())
            # limited to the GPU hosts and the webui role (the drains are delegated to the load balancers all
            # the same)
            rc, out = sh(
                "tools/lab.sh",
                "converge",
                "--limit",
                "gpu",
                "--tags",
                "webui",
                "-e",
                json.dumps({"webui_vllm_env": roll}),
            )
            assert rc == 0, out[-4000:]
            rows = recap(out)
            assert rows["gpu1"]["changed"] >= 1 and rows["gpu2"]["changed"] >= 1, out[-4000:]
            outs.append(out)
        time.sleep(2)
    split = load.split(t0)
    failed = [r for r in split["all"] if not r[3]]
    drains = sum(len(re.findall(r"(?<!un)drained after [0-9.]+ s", out)) for out in outs)
    print(
        "\nrolling restart x%d under load: %d requests (%d API, %d WebUI), %d failed, %d drains %s"
        % (
            ROLLS,
            len(split["all"]),
            len([r for r in split["all"] if r[0] == "api"]),
            len([r for r in split["all"] if r[0] == "webui"]),
            len(failed),
            drains,
            sorted({r[4] for r in failed})[:3],
        )
    )
    # each rollout drains two instances on two load balancers
    assert drains == 4 * ROLLS, outs[0][-3000:]
    assert failed == [], failed[:5]


def test_a_gpu_host_restarted_without_its_data_share_serves_only_once_it_returns(lab):
    """gpu2 loses power under load (docker kill: every process on it dies at once) and boots again (docker
    start), and its data share (a bind mount standing in for NFS, tests/lab/up.yml) does not come back: its
    boot gate holds its instance back and says why, both load balancers keep it out of rotation, and no
    request started after the power cut fails. Once the share is mounted again, the instance starts and is
    back in rotation on both load balancers.

    A power cut, not `docker restart`: a clean shutdown stops the instance somewhere in the seconds the
    shutdown takes (3 s on a busy CI machine), so no request could be said to start after the fault. The
    cut lies between the kill call and its return; what was in flight in that window may fail."""
    gate_interval = 2  # webui_gate_interval in inventories/lab/group_vars/gpu.yml
    lab_vars = REPO / "inventories" / "lab" / "group_vars" / "gpu.yml"
    key = re.search(r"^webui_vllm_api_key: (\S+)", lab_vars.read_text(), re.M).group(1)
    load = Load(VIP, [("api", api_chat(VIP, key, "Qwen3-VL-4B-Instruct")), ("webui", webui_chat(VIP))], 3)
    with load:
        time.sleep(2)
        fault = time.time()
        assert sh("docker", "kill", "qwen3vl-lab-gpu2")[0] == 0
        killed = time.time()
        assert sh("docker", "start", "qwen3vl-lab-gpu2")[0] == 0
        wait_for(
            "gpu2's gate holds its instance back",
            lambda: '"mount_missing"' in in_host("gpu2", "cat /run/qwen3vl-gate/state.json")[1],
            120,
        )
        time.sleep(3 * gate_interval)  # three more rounds: still nothing may run
        running = in_host("gpu2", "docker ps -q --filter label=qwen3vl.ha.role=webui")[1].split()
        assert running == [], "gpu2 started containers without its share: %s" % running
        assert in_host("gpu2", "ls -A /mnt/qwen3vl-data")[1] == "", "something wrote onto the bare mount point"
        journal = in_host("gpu2", "journalctl -b -u qwen3vl-instance-gate --no-pager -o cat")[1]
        assert "instance 0: held back (mount_missing): not mounted: /mnt/qwen3vl-data" in journal, journal
        for lb in ("lb1", "lb2"):
            servers = rotation(lb, "gpu2")
            assert servers and not any(state[0] for state in servers.values()), (lb, servers)

        assert in_host("gpu2", "mount --bind /srv/lab-share/data /mnt/qwen3vl-data")[0] == 0
        returned = time.monotonic()
        back = {
            lb: wait_for(lb + " has gpu2 back in rotation", lambda lb=lb: all_in_rotation(lb, "gpu2"), 90) - returned
            for lb in ("lb1", "lb2")
        }
        time.sleep(2)
    split = load.split(fault, fault_end=killed)
    print(
        "\ngpu2 power-cycled without its share under load: %d requests; failed: %d in flight at the cut, %d "
        "started in the second after it, %d later (docker kill took %.2f s); back in rotation %s after the "
        "share returned"
        % (
            len(split["all"]),
            len(split["in_flight"]),
            len(split["early"]),
            len(split["after"]),
            killed - fault,
            ", ".join("%s %.1f s" % item for item in sorted(back.items())),
        )
    )
    assert split["after"] == [], split["after"][:5]


def test_monitor1_scrapes_every_target_the_inventory_implies_and_all_answer(lab):
    """Prometheus on monitor1 was given no list: its targets come from the inventory and the webui role's
    records. Every one must be there and up, every probe (VIP over HTTPS, storage1's NFS port, each
    instance's /health) must succeed."""
    settings = yaml.safe_load((REPO / "inventories" / "lab" / "group_vars" / "monitoring.yml").read_text())
    bound = (
        2 * (_duration_s(settings["prometheus_scrape_interval"]) + _duration_s(settings["prometheus_scrape_timeout"]))
        + 5
    )
    expected = {("prometheus", "monitor1"), ("alertmanager", "monitor1"), ("blackbox_nfs", "storage1")}
    expected |= {("node", host) for host in HOSTS} | {("nginx", lb) for lb in ("lb1", "lb2")}
    expected |= {(job, gpu) for job in ("vllm", "blackbox_instance") for gpu in ("gpu1", "gpu2")}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def query(path):
        with opener.open("http://172.29.72.41:9090" + path, timeout=10) as response:
            return json.load(response)["data"]

    def state():
        found = {}
        for target in query("/api/v1/targets")["activeTargets"]:
            labels = target["labels"]
            found[(labels["job"], labels.get("host", labels.get("vip")))] = target["health"]
        return found

    def all_up():
        found = state()
        return set(found) == expected | {("blackbox_vip", VIP)} and all(h == "up" for h in found.values())

    try:
        wait_for("every target up", all_up, bound)
    except AssertionError:
        raise AssertionError("targets of monitor1 after %d s: %s" % (bound, state())) from None
    failing = [r["metric"] for r in query("/api/v1/query?query=probe_success%3D%3D0")["result"]]
    assert failing == [], failing


def test_every_panel_of_the_shipped_dashboard_returns_data_from_the_labs_prometheus(lab):
    """dashboards/qwen3vl-service.json: each panel's queries, with Grafana's variables filled in as Grafana
    would ($host = every host, $__rate_interval = 1m), parse in monitor1's Prometheus and return data, after
    a few seconds of chat load through the VIP (the rate and latency panels need requests to look at)."""
    settings = yaml.safe_load((REPO / "inventories" / "lab" / "group_vars" / "monitoring.yml").read_text())
    scrape = _duration_s(settings["prometheus_scrape_interval"]) + _duration_s(settings["prometheus_scrape_timeout"])
    key = re.search(r"^webui_vllm_api_key: (\S+)", (REPO / "inventories/lab/group_vars/gpu.yml").read_text(), re.M)
    load = Load(VIP, [("api", api_chat(VIP, key.group(1), "Qwen3-VL-4B-Instruct"))], 2)
    with load:
        time.sleep(2 * scrape + 2)
    dashboard = json.loads((REPO / "dashboards" / "qwen3vl-service.json").read_text())
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    empty, failed = [], []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", "1m").replace("$host", ".*")
            url = "http://172.29.72.41:9090/api/v1/query?" + urllib.parse.urlencode({"query": expr})
            try:
                with opener.open(url, timeout=10) as response:
                    result = json.load(response)["data"]["result"]
            except urllib.error.HTTPError as exc:
                failed.append("%s [%s]: %s" % (panel["title"], target["refId"], exc.read().decode()[:300]))
                continue
            if not result:
                empty.append("%s [%s]: %s" % (panel["title"], target["refId"], expr))
    assert not failed, "queries Prometheus refused:\n" + "\n".join(failed)
    assert not empty, "queries without data:\n" + "\n".join(empty)


def _duration_s(text):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    match = re.fullmatch(r"([0-9]+)(ms|s|m|h)", str(text))
    assert match, "not a simple duration: %r" % text
    return int(match.group(1)) * units[match.group(2)]


def _notifications():
    rc, out = in_host("monitor1", "cat /var/log/qwen3vl-alerts.jsonl 2>/dev/null || true")
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _notified(alertname, host, status, after):
    """The first notification received after ``after`` that carries ``alertname`` for ``host`` with ``status``."""
    for note in _notifications():
        if note["received"] < after:
            continue
        for alert in note["alerts"]:
            if alert["labels"].get("alertname") == alertname and alert["labels"].get("host") == host:
                if alert["status"] == status:
                    return note, alert
    return None


def test_a_stopped_vllm_is_alerted_through_the_receiver_and_resolved_after_it_returns(lab):
    """gpu1's vLLM container is stopped (it stays down: Docker's restart policy leaves a stopped container
    alone): monitor1's Prometheus finds its target down, the instance-down alert fires after its `for:` and
    Alertmanager delivers it to the lab's receiver (the alert recorder, a chat bridge's stand-in). Started
    again, the resolved notification follows. Both bounds come from the lab's monitoring settings."""
    settings = yaml.safe_load((REPO / "inventories" / "lab" / "group_vars" / "monitoring.yml").read_text())
    scrape = _duration_s(settings["prometheus_scrape_interval"]) + _duration_s(settings["prometheus_scrape_timeout"])
    evaluation = _duration_s(settings["prometheus_evaluation_interval"])
    margin = 5  # a busy 2-core machine: the scrape, rule and notification loops each run a little late
    # a failed scrape, the rule's first sight of it, `for:`, the evaluation that fires, then Alertmanager's group wait
    fire_bound = (
        scrape
        + evaluation
        + _duration_s(settings["prometheus_alert_down_for"])
        + evaluation
        + _duration_s(settings["alertmanager_group_wait"])
        + margin
    )
    # the first good scrape, the evaluation that resolves, the group's next flush
    resolve_bound = scrape + evaluation + _duration_s(settings["alertmanager_group_interval"]) + margin
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def vllm_answers():
        try:
            with opener.open("http://172.29.72.21:8000/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    fault = time.time()
    assert in_host("gpu1", "docker stop -t 10 qwen3vl-vllm-0")[0] == 0
    stopped = time.time()
    try:
        fired_at = wait_for(
            "the instance-down alert reaches the receiver",
            lambda: _notified("QwenVLLMDown", "gpu1", "firing", fault),
            fire_bound + (stopped - fault),
            step=0.5,
        )
        note, alert = _notified("QwenVLLMDown", "gpu1", "firing", fault)
        assert alert["labels"]["model_instance"] == "0" and alert["labels"]["severity"] == "critical", alert
        fired = note["received"] - stopped
    finally:
        assert in_host("gpu1", "docker start qwen3vl-vllm-0")[0] == 0
    wait_for("gpu1's vLLM answers again", vllm_answers, 120)
    back = time.time()
    wait_for(
        "the resolved notification reaches the receiver",
        lambda: _notified("QwenVLLMDown", "gpu1", "resolved", back - 1),
        resolve_bound + 1,
        step=0.5,
    )
    resolved = _notified("QwenVLLMDown", "gpu1", "resolved", back - 1)[0]["received"] - back
    for lb in ("lb1", "lb2"):
        wait_for(lb + " has gpu1 back in rotation", lambda lb=lb: all_in_rotation(lb, "gpu1"), 60)
    print(
        "\ngpu1's vLLM stopped: QwenVLLMDown delivered %.1f s after the stop (bound %.0f s: scrape %s + timeout %s, "
        "2 evaluations of %s, for %s, group wait %s, margin %d s); resolved delivered %.1f s after it answered "
        "again (bound %.0f s)"
        % (
            fired,
            fire_bound,
            settings["prometheus_scrape_interval"],
            settings["prometheus_scrape_timeout"],
            settings["prometheus_evaluation_interval"],
            settings["prometheus_alert_down_for"],
            settings["alertmanager_group_wait"],
            margin,
            resolved,
            resolve_bound,
        )
    )
    assert fired_at  # (wait_for raised otherwise)
    assert fired <= fire_bound, "delivered after %.1f s, bound %.0f s" % (fired, fire_bound)
    assert resolved <= resolve_bound, "resolved after %.1f s, bound %.0f s" % (resolved, resolve_bound)


def test_second_converge_changes_nothing(lab):
    rc, out = sh("tools/lab.sh", "converge")
    assert rc == 0, out[-4000:]
    rows = recap(out)
    assert rows and all(r["changed"] == 0 and r["failed"] == 0 for r in rows.values()), out[-4000:]


def test_check_mode_is_clean(lab):
    rc, out = sh("tools/lab.sh", "converge", "--check")
    assert rc == 0, out[-4000:]
    rows = recap(out)
    assert rows and all(r["changed"] == 0 and r["failed"] == 0 for r in rows.values()), out[-4000:]
