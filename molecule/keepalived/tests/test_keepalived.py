"""keepalived: a VRRP VIP on two systemd hosts that follows a healthy nginx, measured from the outside.

The tracked nginx is prepare.yml's stand-in for the nginx_lb role: port 80 answers with the host's name,
so a request to the VIP says which host holds it. HTTP goes from the machine running the tests to the VIP
on the scenario's own docker network (the host has a route to it); commands go to the scenario's own
containers (docker exec / docker kill / docker start). Time bounds are derived from the role's variables
(defaults overlaid with molecule.yml's group_vars), never hard-coded; what was measured is printed (-s).
"""

import functools
import hashlib
import ipaddress
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

SCENARIO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SCENARIO.parent / "shared"))
from playbook_run import recap_changed, run_converge  # noqa: E402

converge = functools.partial(run_converge, SCENARIO, expect_rc=None)
ROLE = SCENARIO.parents[1] / "roles" / "keepalived"
LB1, LB2 = "qwen3vl-mol-ka-lb1", "qwen3vl-mol-ka-lb2"
HOSTS = (LB1, LB2)
CONF = "/etc/keepalived/keepalived.conf"
PROM = "/var/lib/prometheus/node-exporter/qwen3vl_keepalived_qwen3vl.prom"
# Allowance on top of the protocol's own times: the HTTP poll interval, gratuitous ARP reaching this
# machine, and scheduling on a small, busy CI machine.
MARGIN_S = 1.0
POLL_S = 0.02


def _settings():
    values = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    scenario = yaml.safe_load((SCENARIO / "molecule.yml").read_text())
    values.update(scenario["provisioner"]["inventory"]["group_vars"]["lb"])
    return values


S = _settings()
VIP = S["keepalived_vip"]
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def ipaddress_next(address):
    return ipaddress.IPv4Address(address) + 1


def sh(name, command, check=True, timeout=60):
    proc = subprocess.run(
        ["docker", "exec", name, "sh", "-c", command], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check:
        assert proc.returncode == 0, "%s: %s -> %d\n%s%s" % (name, command, proc.returncode, proc.stdout, proc.stderr)
    return proc


def who_answers(timeout=0.3, vip=VIP):
    """The host name the VIP's nginx answers with, or None."""
    try:
        with _OPENER.open("http://%s/" % vip, timeout=timeout) as resp:
            return resp.read().decode().strip()
    except (urllib.error.URLError, OSError):
        return None


def wait_for(predicate, limit):
    """Seconds until predicate() is true (polled every POLL_S), or None after ``limit`` seconds."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if predicate():
            return time.monotonic() - start
        time.sleep(POLL_S)
    return None


def vip_holders():
    return [h for h in HOSTS if (" %s/" % VIP) in sh(h, "ip -4 -o addr show", check=False).stdout]


def metric_state(name):
    """The state whose one-hot sample is 1 in the host's textfile metric (and the sum of all samples)."""
    text = sh(name, "cat %s" % PROM).stdout
    samples = dict(
        re.findall(r'^qwen3vl_keepalived_vrrp_state\{vrrp_instance="qwen3vl",state="(\w+)"\} (\d)$', text, re.M)
    )
    assert set(samples) == {"MASTER", "BACKUP", "FAULT", "STOP"}, text
    ones = [s for s, v in samples.items() if v == "1"]
    assert len(ones) == 1, "not one-hot: %s" % text
    return ones[0]


def main_pid(name):
    return sh(name, "systemctl show -p MainPID --value keepalived").stdout.strip()


def conf_digest(name):
    return hashlib.sha256(sh(name, "cat %s" % CONF).stdout.encode()).hexdigest()


def backup_priority():
    return int(re.search(r"^\s*priority (\d+)", sh(LB2, "cat %s" % CONF).stdout, re.M).group(1))


def master_down_interval():
    """RFC 5798 6.1: 3 * Advertisement_Interval + Skew_Time, Skew_Time = (256 - priority) * interval / 256."""
    advert = float(S["keepalived_advert_int"])
    return 3 * advert + (256 - backup_priority()) * advert / 256


def assert_settled_on(name, limit=30):
    """The VIP is on ``name`` alone and answers from it (waits up to ``limit`` s for it to settle)."""
    waited = wait_for(lambda: who_answers() == name and vip_holders() == [name], limit)
    assert waited is not None, "VIP not settled on %s: holders %s, answer %r" % (name, vip_holders(), who_answers())
    return waited


class Watch:
    """Records, every POLL_S, which host answers on the VIP (for "the VIP never moved" assertions)."""

    def __init__(self):
        self.answers = []

    def sample(self):
        self.answers.append(who_answers())


# --- The steady state ------------------------------------------------------------------------------


def test_exactly_one_host_holds_the_vip_and_it_is_the_preferred_master():
    # lb1 is first in group lb, so it has the higher priority (150 vs 140) and holds the VIP
    assert_settled_on(LB1)
    assert vip_holders() == [LB1]
    assert who_answers() == LB1


def test_textfile_metric_shows_each_hosts_state():
    assert metric_state(LB1) == "MASTER"
    assert metric_state(LB2) == "BACKUP"
    text = sh(LB1, "cat %s" % PROM).stdout
    stamp = float(
        re.search(
            r'^qwen3vl_keepalived_vrrp_last_transition_timestamp_seconds\{vrrp_instance="qwen3vl"\} (\S+)$', text, re.M
        ).group(1)
    )
    assert 0 < time.time() - stamp < 24 * 3600
    assert re.search(r'^qwen3vl_keepalived_vrrp_priority\{vrrp_instance="qwen3vl"\} 150$', text, re.M)
    # written by the unprivileged script user, not by root
    assert sh(LB1, "stat -c %%U %s" % PROM).stdout.strip() == S["keepalived_script_user"]


def test_a_notify_that_runs_late_does_not_overwrite_a_later_transition():
    """keepalived starts a notify per transition; two close together run side by side (at start-up lb2 is
    MASTER for a moment, then BACKUP). Here the MASTER notify is started first and runs last (its shell
    sleeps, then execs the script): the file must keep BACKUP, and a notify started after both still wins."""
    notify = "/usr/local/libexec/qwen3vl-keepalived/notify"
    user = S["keepalived_script_user"]
    prom = PROM.replace("_qwen3vl.prom", "_ordertest.prom")
    run = "runuser -u %s -- %s INSTANCE ordertest" % (user, notify)
    sh(LB2, "rm -f %s" % prom)
    try:
        sh(
            LB2,
            "(runuser -u %s -- sh -c 'sleep 2; exec %s INSTANCE ordertest MASTER 140' &) ; %s BACKUP 140; sleep 3"
            % (user, notify, run),
        )
        text = sh(LB2, "cat %s" % prom).stdout
        assert 'state="BACKUP"} 1' in text, text
        sh(LB2, "%s MASTER 140" % run)
        assert 'state="MASTER"} 1' in sh(LB2, "cat %s" % prom).stdout
    finally:
        sh(LB2, "%s DELETED 140; rm -f %s" % (run, prom), check=False)


def test_transitions_are_in_the_journal():
    lb1 = sh(LB1, "journalctl -t qwen3vl-keepalived --no-pager -o cat").stdout
    lb2 = sh(LB2, "journalctl -t qwen3vl-keepalived --no-pager -o cat").stdout
    assert "VRRP INSTANCE qwen3vl: now MASTER (priority 150)" in lb1, lb1
    assert "VRRP INSTANCE qwen3vl: now BACKUP (priority 140)" in lb2, lb2


def test_script_user_exists_without_login_shell_or_home(host):
    user = host.user(S["keepalived_script_user"])
    assert user.exists
    assert user.shell in ("/usr/sbin/nologin", "/bin/false")
    assert not host.file(user.home).exists
    assert user.uid < 1000, "not a system user"


def test_config_enables_script_security_and_scripts_are_root_only(host):
    conf = host.file(CONF).content_string
    assert re.search(r"^\s*enable_script_security\s*$", conf, re.M)
    assert re.search(r"^\s*script_user %s\b" % S["keepalived_script_user"], conf, re.M)
    for path in ("/usr/local/libexec/qwen3vl-keepalived/check-lb", "/usr/local/libexec/qwen3vl-keepalived/notify"):
        f = host.file(path)
        assert (f.user, f.group) == ("root", "root")
        assert f.mode & 0o022 == 0, "%s is writable by non-root" % path
    # keepalived did not disable the scripts as unsafe
    log = host.check_output("journalctl -u keepalived --no-pager -o cat")
    assert "SECURITY VIOLATION" not in log and "unsafe" not in log.lower()


def test_health_url_failing_with_nginx_running_puts_the_backup_in_fault():
    """The check proves more than a running process: nginx up but /healthz gone is a failure. Done on the
    backup, so the VIP does not move; keepalived must put the instance in FAULT there and bring it back."""
    site = "/etc/nginx/sites-available/default"
    check = "runuser -u %s -- /usr/local/libexec/qwen3vl-keepalived/check-lb" % S["keepalived_script_user"]
    assert sh(LB2, check, check=False).returncode == 0
    sh(LB2, "sed -i 's#location = /healthz #location = /healthz-off #' %s && systemctl reload nginx" % site)
    try:
        assert sh(LB2, "pidof nginx", check=False).returncode == 0
        assert wait_for(lambda: sh(LB2, check, check=False).returncode != 0, 5) is not None
        limit = S["keepalived_check_fall"] * S["keepalived_check_interval"] + S["keepalived_check_timeout"] + MARGIN_S
        assert wait_for(lambda: metric_state(LB2) == "FAULT", limit + 5) is not None
        assert vip_holders() == [LB1]
    finally:
        sh(LB2, "sed -i 's#location = /healthz-off #location = /healthz #' %s && systemctl reload nginx" % site)
    # (a reload swaps nginx's workers gracefully: the old one may answer for a moment)
    assert wait_for(lambda: sh(LB2, check, check=False).returncode == 0, 5) is not None
    assert wait_for(lambda: metric_state(LB2) == "BACKUP", 10) is not None
    assert_settled_on(LB1, limit=2)


# --- Configuration changes ------------------------------------------------------------------------


def test_config_change_is_applied_by_reload_and_the_vip_stays():
    before = {h: main_pid(h) for h in HOSTS}
    watch = Watch()
    proc = subprocess.Popen(
        [
            "ansible-playbook",
            "-i",
            os.environ["MOLECULE_INVENTORY_FILE"],
            str(SCENARIO / "converge.yml"),
            "-e",
            json.dumps({"keepalived_extra_global_defs": ["vrrp_garp_master_refresh 60"]}),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    while proc.poll() is None:
        watch.sample()
        time.sleep(POLL_S)
    out = proc.stdout.read()
    assert proc.returncode == 0, out[-4000:]
    for _attempt in range(int(3 / POLL_S)):  # and a few seconds after the reload
        watch.sample()
        time.sleep(POLL_S)
    assert "RUNNING HANDLER [qwen3vl.ha.keepalived : Reload keepalived]" in out
    assert "vrrp_garp_master_refresh 60" in sh(LB1, "cat %s" % CONF).stdout
    assert {h: main_pid(h) for h in HOSTS} == before, "keepalived was restarted, not reloaded"
    assert set(watch.answers) == {LB1}, "the VIP moved or stopped answering during a reload: %s" % sorted(
        set(map(str, watch.answers))
    )
    print("\nreload: %d requests to the VIP during converge + reload, all answered by %s" % (len(watch.answers), LB1))
    rc, out = converge()
    assert rc == 0, out[-4000:]
    assert "vrrp_garp_master_refresh" not in sh(LB1, "cat %s" % CONF).stdout


def test_active_active_two_instances_each_host_master_of_one():
    """Two VIPs, each host the preferred master of one: both answer, each from its own host. Going back to
    the single instance removes the other VIP and the removed instances' metric files (DELETED)."""
    vip_b = str(ipaddress_next(VIP))
    instances = [
        {"name": "vip_a", "vips": [VIP], "virtual_router_id": 61, "priority_order": [LB1, LB2]},
        {"name": "vip_b", "vips": [vip_b], "virtual_router_id": 62, "priority_order": [LB2, LB1]},
    ]
    rc, out = converge({"keepalived_instances": instances})
    assert rc == 0, out[-4000:]
    try:
        assert wait_for(lambda: who_answers() == LB1 and who_answers(vip=vip_b) == LB2, 10) is not None
        prom = "/var/lib/prometheus/node-exporter/qwen3vl_keepalived_%s.prom"
        assert wait_for(lambda: sh(LB1, "test ! -e %s" % PROM, check=False).returncode == 0, 5) is not None
        lb1_b = sh(LB1, "cat %s" % (prom % "vip_b")).stdout
        assert 'qwen3vl_keepalived_vrrp_state{vrrp_instance="vip_b",state="BACKUP"} 1' in lb1_b
        lb2_b = sh(LB2, "cat %s" % (prom % "vip_b")).stdout
        assert 'qwen3vl_keepalived_vrrp_state{vrrp_instance="vip_b",state="MASTER"} 1' in lb2_b
    finally:
        rc, out = converge()
        assert rc == 0, out[-4000:]
    assert wait_for(lambda: who_answers(vip=vip_b) is None, 5) is not None
    assert_settled_on(LB1, limit=10)
    for h in HOSTS:
        assert sh(h, "ls /var/lib/prometheus/node-exporter").stdout.split() == ["qwen3vl_keepalived_qwen3vl.prom"]


def test_config_that_keepalived_rejects_never_replaces_the_running_one():
    """A value preflight cannot judge (a keyword keepalived does not know): the validation refuses the file,
    the old file stays, keepalived keeps running with it and the VIP keeps answering."""
    before = {h: (conf_digest(h), main_pid(h)) for h in HOSTS}
    rc, out = converge({"keepalived_extra_global_defs": ["qwen3vl_no_such_keyword 1"]})
    assert rc != 0, out[-4000:]
    assert "Unknown keyword 'qwen3vl_no_such_keyword'" in out, out[-4000:]
    assert "failed to validate" in out, out[-4000:]
    assert {h: (conf_digest(h), main_pid(h)) for h in HOSTS} == before
    assert "qwen3vl_no_such_keyword" not in sh(LB1, "cat %s" % CONF).stdout
    for h in HOSTS:
        assert sh(h, "systemctl is-active keepalived").stdout.strip() == "active"
    assert_settled_on(LB1, limit=2)


# --- Failover, measured ---------------------------------------------------------------------------


def test_nginx_failure_on_the_master_moves_the_vip_and_preempt_brings_it_back():
    interval, fall, rise, timeout = (
        S["keepalived_check_interval"],
        S["keepalived_check_fall"],
        S["keepalived_check_rise"],
        S["keepalived_check_timeout"],
    )
    down = master_down_interval()
    # the check fails `fall` times in a row (interval apart, the last taking up to `timeout`), the master
    # enters FAULT and leaves; at worst the backup waits its Master_Down_Interval
    bound = fall * interval + timeout + down + MARGIN_S
    assert_settled_on(LB1)
    sh(LB1, "systemctl stop nginx")
    elapsed = wait_for(lambda: who_answers() == LB2, bound + 10)
    print(
        "\nnginx stopped on %s: VIP answered by %s after %s s (bound %.2f s = fall %d * interval %d + timeout %d"
        " + master-down %.2f + margin %.1f)"
        % (
            LB1,
            LB2,
            "%.3f" % elapsed if elapsed is not None else "never",
            bound,
            fall,
            interval,
            timeout,
            down,
            MARGIN_S,
        )
    )
    try:
        assert elapsed is not None and elapsed <= bound
        assert vip_holders() == [LB2]
        assert wait_for(lambda: metric_state(LB1) == "FAULT" and metric_state(LB2) == "MASTER", 5) is not None
        assert "now FAULT" in sh(LB1, "journalctl -t qwen3vl-keepalived --no-pager -o cat").stdout
    finally:
        sh(LB1, "systemctl start nginx")
    # back: `rise` good checks, then lb1 (higher priority, preempt) takes the VIP over at once
    back_bound = (rise + 1) * interval + timeout + float(S["keepalived_preempt_delay"]) + down + MARGIN_S
    back = wait_for(lambda: who_answers() == LB1, back_bound + 10)
    print(
        "nginx started on %s: VIP back on it after %s s (bound %.2f s)"
        % (LB1, "%.3f" % back if back is not None else "never", back_bound)
    )
    assert back is not None and back <= back_bound
    assert_settled_on(LB1, limit=2)
    assert wait_for(lambda: metric_state(LB1) == "MASTER" and metric_state(LB2) == "BACKUP", 5) is not None


def test_power_loss_of_the_master_moves_the_vip_and_it_returns_after_boot():
    down = master_down_interval()
    bound = down + MARGIN_S
    assert_settled_on(LB1)
    subprocess.run(["docker", "kill", LB1], check=True, capture_output=True)
    elapsed = wait_for(lambda: who_answers() == LB2, bound + 10)
    print(
        "\n%s killed (docker kill): VIP answered by %s after %s s (bound %.2f s = 3 * advert_int %s + skew + margin %.1f)"
        % (LB1, LB2, "%.3f" % elapsed if elapsed is not None else "never", bound, S["keepalived_advert_int"], MARGIN_S)
    )
    try:
        assert elapsed is not None and elapsed <= bound
        assert metric_state(LB2) == "MASTER"
    finally:
        subprocess.run(["docker", "start", LB1], check=True, capture_output=True)
    booted = wait_for(
        lambda: sh(LB1, "systemctl is-system-running", check=False).stdout.strip() in ("running", "degraded"), 90
    )
    assert booted is not None, "systemd did not come up in %s" % LB1
    back = wait_for(lambda: who_answers() == LB1, 60)
    print(
        "%s started again: systemd up after %.1f s, VIP back on it %s s later"
        % (LB1, booted, "%.1f" % back if back is not None else "never")
    )
    assert back is not None
    assert_settled_on(LB1, limit=5)
    assert sh(LB1, "systemctl is-enabled keepalived").stdout.strip() == "enabled"
    assert metric_state(LB1) == "MASTER"


# --- Bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            {"keepalived_vip": "10.99.0.1"},
            "keepalived_vip: 10.99.0.1 is not in qwen3vl-mol-ka-lb1's subnet 172.29.81.0/24 on eth0",
        ),
        (
            {"keepalived_vip": "172.29.81.12"},
            "keepalived_vip: 172.29.81.12 is qwen3vl-mol-ka-lb2's own address on eth0",
        ),
        (
            {
                "keepalived_instances": [
                    {"name": "vip_a", "vips": ["172.29.81.100"], "virtual_router_id": 51},
                    {"name": "vip_b", "vips": ["172.29.81.101"], "virtual_router_id": 51},
                ]
            },
            "keepalived_instances[1].virtual_router_id: 51 is already used by keepalived_instances[0].virtual_router_id",
        ),
        (
            {"keepalived_foreign_router_ids": [51]},
            "keepalived_virtual_router_id: 51 is in keepalived_foreign_router_ids",
        ),
        ({"keepalived_priority": 300}, "keepalived_priority on qwen3vl-mol-ka-lb1: 300 is outside 1..254"),
        (
            {"keepalived_priority": 120},
            "keepalived_priority: qwen3vl-mol-ka-lb1 and qwen3vl-mol-ka-lb2 both have priority 120",
        ),
        ({"keepalived_advert_int": 0.005}, "keepalived_advert_int: 0.005 must be between 0.01 and 40.95 seconds"),
        ({"keepalived_vrrp_version": 4}, "keepalived_vrrp_version must be one of: 2, 3, got: 4"),
    ],
    ids=[
        "vip-outside-subnet",
        "vip-is-host-address",
        "duplicate-router-id",
        "foreign-router-id",
        "priority-range",
        "duplicate-priority",
        "advert-int",
        "argspec-choice",
    ],
)
def test_bad_input_fails_in_preflight_and_changes_nothing(extra, message):
    before = {h: (conf_digest(h), main_pid(h)) for h in HOSTS}
    rc, out = converge(extra)
    assert rc != 0, out[-4000:]
    assert message in out, out[-4000:]
    assert "TASK [qwen3vl.ha.keepalived : Install keepalived" not in out, "got past preflight"
    assert [recap_changed(out, h) for h in HOSTS] == [0, 0], out[-2000:]
    assert {h: (conf_digest(h), main_pid(h)) for h in HOSTS} == before
