"""monitoring: node_exporter, Prometheus and a clustered Alertmanager on two systemd hosts, checked from outside.

mon2 is also a GPU host with one stand-in vLLM instance (prepare.yml), so the vLLM job comes from the webui
role's record as in production. HTTP goes from the machine running the tests to the scenario's own docker
network; commands go to the scenario's containers (docker exec). Waits are derived from the scenario's
scrape and evaluation intervals, never hard-coded.
"""

import functools
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

SCENARIO = Path(__file__).resolve().parents[1]
REPO = SCENARIO.parents[1]
sys.path.insert(0, str(SCENARIO.parent / "shared"))
from playbook_run import recap_changed, run_converge  # noqa: E402

converge = functools.partial(run_converge, SCENARIO, expect_rc=None)
MON1, MON2 = "qwen3vl-mol-mon-mon1", "qwen3vl-mol-mon-mon2"
# converge.yml's roles; a test that changes one role's settings runs only that role (--tags: each role tags
# all its tasks with its name), so its run skips the others' tasks (converge.yml as a whole is molecule's)
ROLES = ("node_exporter", "nginx_exporter", "blackbox_exporter", "alertmanager", "prometheus")
SERVERS = "alertmanager,prometheus"
ADDRESS = {MON1: "172.29.84.11", MON2: "172.29.84.12"}
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _settings():
    values = yaml.safe_load((REPO / "roles" / "prometheus" / "defaults" / "main.yml").read_text())
    values.update(yaml.safe_load((REPO / "roles" / "alertmanager" / "defaults" / "main.yml").read_text()))
    scenario = yaml.safe_load((SCENARIO / "molecule.yml").read_text())
    values.update(scenario["provisioner"]["inventory"]["group_vars"]["monitoring"])
    return values


S = _settings()


def seconds(duration):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for unit in ("ms", "s", "m", "h"):
        if duration.endswith(unit) and duration[: -len(unit)].isdigit():
            return int(duration[: -len(unit)]) * units[unit]
    raise ValueError(duration)


SCRAPE_S = seconds(S["prometheus_scrape_interval"]) + seconds(S["prometheus_scrape_timeout"])
EVAL_S = seconds(S["prometheus_evaluation_interval"])
# a change reaches a query after a reload, the next scrape and its timeout; scheduling on a busy machine
MARGIN_S = 5


def sh(name, command, check=True):
    proc = subprocess.run(["docker", "exec", name, "sh", "-c", command], capture_output=True, text=True, check=False)
    if check:
        assert proc.returncode == 0, "%s: %s: %s%s" % (name, command, proc.stdout, proc.stderr)
    return proc


def get(host, port, path):
    with _OPENER.open("http://%s:%d%s" % (ADDRESS[host], port, path), timeout=10) as response:
        return json.load(response)


def prom(host, path, **params):
    query = ("?" + urllib.parse.urlencode(params)) if params else ""
    return get(host, S["prometheus_port"], path + query)["data"]


def wait_for(check, limit, step=0.5):
    """check() until it returns something true, or None after ``limit`` s."""
    deadline = time.monotonic() + limit
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            return None
        time.sleep(step)


def targets(host):
    return {
        (t["labels"]["job"], t["labels"]["host"], t["labels"].get("model_instance")): t["health"]
        for t in prom(host, "/api/v1/targets")["activeTargets"]
    }


def main_pid(name, unit):
    return sh(name, "systemctl show -p MainPID --value %s" % unit).stdout.strip()


def file_hash(name, path):
    return hashlib.sha256(sh(name, "cat %s" % path).stdout.encode()).hexdigest()


EXPECTED = {
    ("prometheus", MON1, None),
    ("prometheus", MON2, None),
    ("alertmanager", MON1, None),
    ("alertmanager", MON2, None),
    ("node", MON1, None),
    ("node", MON2, None),
    ("vllm", MON2, "0"),
    ("nginx", MON1, None),
    ("blackbox_instance", MON2, "0"),
}


@pytest.mark.parametrize("host", [MON1, MON2])
def test_every_target_comes_from_the_inventory_and_is_up(host):
    up = wait_for(
        lambda: set(targets(host)) == EXPECTED and all(h == "up" for h in targets(host).values()),
        2 * SCRAPE_S + MARGIN_S,
    )
    assert up, "targets of %s: %s" % (host, targets(host))


def test_a_textfile_metric_written_on_a_host_reaches_prometheus_with_its_host_label():
    sh(MON2, "printf 'qwen3vl_molecule_probe 42\\n' > /var/lib/prometheus/node-exporter/molecule.prom")
    try:
        found = wait_for(
            lambda: prom(MON1, "/api/v1/query", query="qwen3vl_molecule_probe")["result"], SCRAPE_S + MARGIN_S
        )
        assert found, "the textfile metric never reached Prometheus"
        assert found[0]["metric"]["host"] == MON2 and found[0]["value"][1] == "42"
    finally:
        sh(MON2, "rm -f /var/lib/prometheus/node-exporter/molecule.prom")


def test_the_alert_rules_are_loaded():
    groups = {g["name"]: [r["name"] for r in g["rules"]] for g in prom(MON1, "/api/v1/rules")["groups"]}
    assert "qwen3vl-monitoring" in groups and "Watchdog" in groups["qwen3vl-monitoring"], groups
    assert any("QwenVLLMDown" in rules for rules in groups.values()), groups


def test_the_rules_pass_their_promtool_unit_tests_as_deployed():
    # the deployed file (rendered by the role with this scenario's settings: the alert thresholds are the
    # defaults the test cases are written for) beside tests/rules' cases
    test_file = (REPO / "tests" / "rules" / "qwen3vl.rules.test.yml").read_text()
    sh(
        MON1,
        "rm -rf /tmp/rules-test && mkdir /tmp/rules-test && cp /etc/prometheus/rules/qwen3vl.rules.yml /tmp/rules-test/",
    )
    subprocess.run(
        ["docker", "exec", "-i", MON1, "sh", "-c", "cat > /tmp/rules-test/qwen3vl.rules.test.yml"],
        input=test_file,
        text=True,
        check=True,
    )
    out = sh(MON1, "cd /tmp/rules-test && promtool test rules qwen3vl.rules.test.yml", check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr


def test_the_alertmanagers_form_one_cluster():
    for host in (MON1, MON2):
        status = get(host, S["alertmanager_port"], "/api/v2/status")["cluster"]
        assert status["status"] == "ready", status
        assert sorted(p["address"].split(":")[0] for p in status["peers"]) == sorted(ADDRESS.values())


def recorded(host):
    text = sh(host, "cat /var/log/qwen3vl-alerts.jsonl 2>/dev/null || true").stdout
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_the_watchdog_fires_and_reaches_the_receiver():
    # the Watchdog is firing from the first evaluation; the notification follows the group wait
    bound = SCRAPE_S + 2 * EVAL_S + seconds(S["alertmanager_group_wait"]) + MARGIN_S
    note = wait_for(
        lambda: [
            n
            for h in (MON1, MON2)
            for n in recorded(h)
            if any(a["labels"].get("alertname") == "Watchdog" for a in n["alerts"])
        ],
        bound,
    )
    assert note, "no Watchdog notification within %.0f s" % bound


def test_a_reload_applies_a_change_and_keeps_the_processes():
    pids = {(h, u): main_pid(h, u) for h in (MON1, MON2) for u in ("prometheus", "prometheus-alertmanager")}
    rc, out = converge(
        {"prometheus_external_labels": {"site": "molecule"}, "alertmanager_repeat_interval": "3h"}, tags=SERVERS
    )
    try:
        assert rc == 0, out[-4000:]
        assert recap_changed(out) > 0
        for host in (MON1, MON2):
            # (a reload is a SIGHUP: the servers take the new files up a moment after systemctl returns)
            assert wait_for(lambda h=host: "site: molecule" in prom(h, "/api/v1/status/config")["yaml"], MARGIN_S)
            assert wait_for(
                lambda h=host: (
                    "repeat_interval: 3h" in get(h, S["alertmanager_port"], "/api/v2/status")["config"]["original"]
                ),
                MARGIN_S,
            )
        assert {(h, u): main_pid(h, u) for h, u in pids} == pids, "a process was restarted instead of reloaded"
    finally:
        rc, out = converge(tags=SERVERS)
        assert rc == 0, out[-4000:]


def test_changed_arguments_restart_the_exporter_and_it_serves_with_them():
    # flags are read only at start: a changed argument restarts the daemon (the _common daemon entry point)
    pid = main_pid(MON2, "prometheus-node-exporter")
    rc, out = converge({"node_exporter_disabled_collectors": ["loadavg"]}, limit=MON2, tags="node_exporter")
    try:
        assert rc == 0, out[-4000:]
        assert "--no-collector.loadavg" in sh(MON2, "cat /etc/default/prometheus-node-exporter").stdout
        assert main_pid(MON2, "prometheus-node-exporter") != pid
        gone = wait_for(
            lambda: not prom(MON1, "/api/v1/query", query='node_load1{host="%s"}' % MON2)["result"],
            2 * SCRAPE_S + MARGIN_S,
        )
        assert gone, "node_load1 still scraped from mon2 after its collector was turned off"
    finally:
        rc, out = converge(limit=MON2, tags="node_exporter")
        assert rc == 0, out[-4000:]
    assert wait_for(
        lambda: prom(MON1, "/api/v1/query", query='node_load1{host="%s"}' % MON2)["result"], 2 * SCRAPE_S + MARGIN_S
    )


@pytest.mark.parametrize(
    "host, unit, program",
    [(MON2, "prometheus-node-exporter", "node_exporter"), (MON1, "prometheus-blackbox-exporter", "blackbox_exporter")],
    ids=["from-the-controller", "from-a-url"],
)
def test_a_release_archive_runs_as_the_package_would(host, unit, program):
    # the role's unit (the package's name), its program from the archive, the packages' user
    assert (
        sh(host, "systemctl show -p FragmentPath --value %s" % unit).stdout.strip()
        == "/etc/systemd/system/%s.service" % unit
    )
    assert (
        sh(host, "readlink /proc/$(systemctl show -p MainPID --value %s)/exe" % unit).stdout.strip()
        == "/usr/local/bin/" + program
    )
    assert sh(host, "ps -o user= -p $(systemctl show -p MainPID --value %s)" % unit).stdout.strip() == "prometheus"
    # the distribution's package is not there: what runs is the archive's program
    assert (
        "install ok installed" not in sh(host, "dpkg-query -W -f='${Status}' %s 2>/dev/null" % unit, check=False).stdout
    )
    unpacked = sh(host, "ls /opt/qwen3vl/%s" % unit).stdout.split()
    assert len(unpacked) == 1 and len(unpacked[0]) == 12, unpacked  # one tree, named by the archive's SHA-256


@pytest.mark.parametrize(
    "host, extra, message",
    [
        (MON2, {"node_exporter_archive_sha256": "0" * 64}, "not node_exporter_archive_sha256 " + "0" * 64),
        (MON1, {"blackbox_exporter_archive_sha256": "0" * 64}, "checksum"),
    ],
    ids=["from-the-controller", "from-a-url"],
)
def test_an_archive_whose_sha256_differs_is_refused_and_nothing_of_it_is_used(host, extra, message):
    unit = "prometheus-node-exporter" if "node_exporter_archive_sha256" in extra else "prometheus-blackbox-exporter"
    program = "node_exporter" if "node_exporter_archive_sha256" in extra else "blackbox_exporter"
    pid = main_pid(host, unit)
    before = sh(host, "sha256sum /usr/local/bin/%s; ls /opt/qwen3vl/%s" % (program, unit)).stdout
    rc, out = converge(extra, limit=host, tags=program)
    assert rc != 0, "an archive with another SHA-256 was accepted"
    assert message in out, out[-3000:]
    assert sh(host, "sha256sum /usr/local/bin/%s; ls /opt/qwen3vl/%s" % (program, unit)).stdout == before
    assert main_pid(host, unit) == pid


def test_a_rule_file_promtool_refuses_never_lands_and_the_server_keeps_its_rules():
    before = sorted(r["name"] for g in prom(MON1, "/api/v1/rules")["groups"] for r in g["rules"])
    pid = main_pid(MON1, "prometheus")
    rc, out = converge(
        {"prometheus_rule_files_extra": [str(SCENARIO / "files" / "broken.rules.yml")]}, limit=MON1, tags="prometheus"
    )
    assert rc != 0, "a rule file that does not parse was accepted"
    assert "failed to validate" in out or "promtool" in out, out[-3000:]
    assert sh(MON1, "test -e /etc/prometheus/rules/broken.rules.yml", check=False).returncode != 0
    time.sleep(EVAL_S)
    assert sorted(r["name"] for g in prom(MON1, "/api/v1/rules")["groups"] for r in g["rules"]) == before
    assert main_pid(MON1, "prometheus") == pid


def test_an_alertmanager_configuration_amtool_refuses_never_lands():
    before = file_hash(MON1, "/etc/prometheus/alertmanager.yml")
    bad = [{"name": "default"}, {"name": "recorder", "webhook_configs": [{"url": "not a url"}]}]
    rc, out = converge({"alertmanager_receivers": bad}, limit=MON1, tags="alertmanager")
    assert rc != 0, "a configuration amtool refuses was accepted"
    assert "amtool" in out, out[-3000:]
    assert file_hash(MON1, "/etc/prometheus/alertmanager.yml") == before


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"prometheus_scrape_timeout": "30s"}, "must not be longer than prometheus_scrape_interval"),
        ({"prometheus_alert_down_for": "soon"}, "prometheus_alert_down_for must be a Prometheus duration"),
        ({"alertmanager_receiver": "nobody"}, "alertmanager_receiver 'nobody' is not one of alertmanager_receivers"),
        ({"alertmanager_receivers": [{"name": "default"}, {"name": "default"}]}, "the name 'default' is used twice"),
        (
            {"node_exporter_source": "archive", "node_exporter_archive_src": "", "node_exporter_archive_url": ""},
            "node_exporter_archive_url or node_exporter_archive_src: give exactly one",
        ),
        (
            {"alertmanager_source": "archive", "alertmanager_archive_url": "https://example.invalid/am.tar.gz"},
            "alertmanager_archive_sha256 must be the SHA-256 of the archive",
        ),
        (
            {"node_exporter_extra_args": ["--collector.textfile.directory=/a b"]},
            "arguments with spaces, quotes or backslashes cannot pass through /etc/default/prometheus-node-exporter",
        ),
    ],
    ids=[
        "timeout-over-interval",
        "bad-duration",
        "unknown-receiver",
        "duplicate-receiver",
        "archive-without-source",
        "archive-without-sha256",
        "args-with-space",
    ],
)
def test_bad_input_fails_in_preflight_and_changes_nothing(extra, message):
    # one host is enough to show the refusal (every host runs the same preflight), and the role the variable
    # belongs to (its name's prefix)
    role = next(r for r in ROLES if next(iter(extra)).startswith(r + "_"))
    rc, out = converge(extra, limit=MON1, tags=role)
    assert rc != 0
    assert message in out, out[-3000:]
    assert recap_changed(out) == 0


def test_a_model_instance_added_on_a_gpu_host_is_scraped_after_a_converge():
    fact = "/etc/ansible/facts.d/qwen3vl_webui.fact"
    original = sh(MON2, "cat %s" % fact).stdout
    record = json.loads(original)
    record["instances"].append(dict(record["instances"][0], id=1, gpu_index=1, vllm_port=8001, ui_port=7861))
    tmp = Path(tempfile.mkdtemp())
    try:
        (tmp / "fact").write_text(json.dumps(record))
        subprocess.run(["docker", "cp", str(tmp / "fact"), "%s:%s" % (MON2, fact)], check=True)
        # mon1 alone: its Prometheus reads mon2's record from mon2 (the path of a `--limit monitoring` run)
        rc, out = converge(limit=MON1, tags="prometheus")
        assert rc == 0, out[-4000:]
        # (a reload is a SIGHUP: Prometheus takes the new file up a moment after systemctl returns)
        assert wait_for(lambda: ("vllm", MON2, "1") in targets(MON1), MARGIN_S), targets(MON1)
        # nothing answers on 8001: the new instance's target is down, which the instance-down alert watches
        assert wait_for(lambda: targets(MON1).get(("vllm", MON2, "1")) == "down", 2 * SCRAPE_S + MARGIN_S)
    finally:
        (tmp / "fact").write_text(original)
        subprocess.run(["docker", "cp", str(tmp / "fact"), "%s:%s" % (MON2, fact)], check=True)
        shutil.rmtree(tmp)
        rc, out = converge(limit=MON1, tags="prometheus")
        assert rc == 0, out[-4000:]
    assert wait_for(lambda: ("vllm", MON2, "1") not in targets(MON1), MARGIN_S), targets(MON1)
