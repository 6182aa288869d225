"""firewall: who gets in and who does not, on real nftables in the test hosts, for the host's own ports and
for a Docker published port; VRRP only from the load balancers; the rules kept across a dockerd restart and
loaded again at boot; bad input refused before anything changes.

Every "refused" case has an "open" case on the same port from a host that may connect, so a refusal is the
firewall's and not a missing listener (files/listen.py serves each port the rules name). The admin source
is the machine these tests run on (the network's gateway, molecule.yml).
"""

import functools
import hashlib
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCENARIO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(SCENARIO.parent / "shared"))
from containers import sh  # noqa: E402
from playbook_run import recap_changed, run_converge  # noqa: E402

converge = functools.partial(run_converge, SCENARIO)

ADDRESS = {"lb1": "172.29.81.11", "lb2": "172.29.81.12", "gpu1": "172.29.81.21", "mon1": "172.29.81.41"}
RULES = "/etc/qwen3vl/firewall.nft"
TABLE = "inet qwen3vl_firewall"
VRRP = "/usr/local/lib/vrrp.py"  # files/vrrp.py, copied by prepare.yml

# one TCP connection attempt; prints open, refused or timeout
PROBE = (
    "import socket,sys\n"
    "s=socket.socket(); s.settimeout(3)\n"
    "try: s.connect((sys.argv[1], int(sys.argv[2]))); print('open')\n"
    "except ConnectionRefusedError: print('refused')\n"
    "except OSError: print('timeout')\n"
)

testinfra_hosts = ["ansible://qwen3vl-mol-fw-gpu1"]


def container(name):
    return "qwen3vl-mol-fw-" + name


def reach(source, target, port):
    """What a connection from ``source`` (a host, or "admin": this machine) to ``target``:``port`` gets."""
    if source == "admin":
        try:
            socket.create_connection((ADDRESS[target], port), timeout=3).close()
            return "open"
        except ConnectionRefusedError:
            return "refused"
        except OSError:
            return "timeout"
    out = subprocess.run(
        ["docker", "exec", container(source), "python3", "-c", PROBE, ADDRESS[target], str(port)],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def refused_count(name):
    counter = json.loads(sh(container(name), "nft -j list counter %s refused" % TABLE).stdout)
    return [item["counter"]["packets"] for item in counter["nftables"] if "counter" in item][0]


def wait_for(what, check, seconds):
    end = time.monotonic() + seconds
    while True:
        result = check()
        if result or time.monotonic() > end:
            assert result, "%s: not within %d s" % (what, seconds)
            return result
        time.sleep(0.5)


# (from, to, port, expected): who may connect is in the module docstring of plugins/module_utils/firewall_plan.py
CASES = [
    # the GPU host: a Docker published port (vLLM's) and a port of the host itself (the WebUI's stand-in)
    ("lb1", "gpu1", 8000, "open"),
    ("mon1", "gpu1", 8000, "open"),  # vLLM's /metrics
    ("out1", "gpu1", 8000, "refused"),
    ("admin", "gpu1", 8000, "refused"),  # admins log in with SSH; the model ports are the lbs'
    ("lb2", "gpu1", 7860, "open"),
    ("mon1", "gpu1", 7860, "refused"),
    ("out1", "gpu1", 7860, "refused"),
    ("mon1", "gpu1", 9100, "open"),
    ("lb1", "gpu1", 9100, "refused"),
    ("admin", "gpu1", 22, "open"),
    ("lb1", "gpu1", 22, "refused"),
    # the load balancers: the front door from anyone, the rest from whom it is for
    ("out1", "lb1", 443, "open"),
    ("gpu1", "lb2", 443, "open"),
    ("mon1", "lb1", 9113, "open"),
    ("out1", "lb1", 9113, "refused"),
    ("out1", "lb1", 22, "refused"),
    # monitoring and NFS
    ("admin", "mon1", 9090, "open"),
    ("out1", "mon1", 9090, "refused"),
    ("lb1", "mon1", 9090, "refused"),
    ("gpu1", "mon1", 2049, "open"),
    ("lb1", "mon1", 2049, "refused"),
    ("out1", "mon1", 2049, "refused"),
]


@pytest.mark.parametrize(("source", "target", "port", "expected"), CASES, ids=["%s->%s:%d" % c[:3] for c in CASES])
def test_who_gets_in(source, target, port, expected):
    assert reach(source, target, port) == expected


def test_a_refusal_is_counted():
    before = refused_count("gpu1")
    assert reach("out1", "gpu1", 8000) == "refused"
    assert refused_count("gpu1") > before


def test_vrrp_only_from_the_load_balancers():
    listener = subprocess.Popen(
        ["docker", "exec", container("lb1"), "python3", VRRP, "listen", "4"], stdout=subprocess.PIPE, text=True
    )
    time.sleep(1.5)  # the raw socket is open before the first packet leaves
    for source in ("lb2", "out1", "gpu1"):
        sh(container(source), "python3 %s send %s from-%s" % (VRRP, ADDRESS["lb1"], source))
    delivered = listener.communicate(timeout=30)[0].split()
    assert delivered == ["from-lb2"], delivered


def test_the_rules_file_and_unit():
    rules = sh(container("gpu1"), "cat %s" % RULES).stdout
    assert "fib daddr type != local return" in rules
    assert sh(container("gpu1"), "stat -c %a " + RULES).stdout.strip() == "600"
    assert sh(container("gpu1"), "systemctl is-enabled qwen3vl-firewall").stdout.strip() == "enabled"
    # Docker's own tables are there beside ours: the role replaced only its table
    assert "qwen3vl_firewall" in sh(container("gpu1"), "nft list tables").stdout
    assert "DOCKER" in sh(container("gpu1"), "iptables -t nat -S").stdout


def published_port_guarded():
    return reach("lb1", "gpu1", 8000) == "open" and reach("out1", "gpu1", 8000) == "refused"


def test_a_dockerd_restart_keeps_the_rules():
    sh(container("gpu1"), "systemctl restart docker")
    # the container comes back (restart policy always) with Docker's DNAT written anew
    wait_for("the published port answering the lb again", lambda: reach("lb1", "gpu1", 8000) == "open", 60)
    assert reach("out1", "gpu1", 8000) == "refused"
    assert reach("mon1", "gpu1", 7860) == "refused"


def test_the_rules_are_loaded_at_boot_before_docker():
    subprocess.run(["docker", "restart", container("gpu1")], check=True, capture_output=True)
    wait_for(
        "systemd running again",
        lambda: (
            sh(container("gpu1"), "systemctl is-system-running", check=False).stdout.strip() in ("running", "degraded")
        ),
        90,
    )
    wait_for("the published port answering the lb after the reboot", lambda: reach("lb1", "gpu1", 8000) == "open", 60)
    assert published_port_guarded()

    def started(unit):
        out = sh(container("gpu1"), "systemctl show -p ActiveEnterTimestampMonotonic --value " + unit).stdout
        return int(out.strip())

    assert 0 < started("qwen3vl-firewall") < started("docker")


def test_an_extra_rule_for_a_group_and_back():
    extra = {"firewall_allow": [{"name": "webui for the outsiders", "ports": [7860], "sources": ["@outsider"]}]}
    converge(extra, limit="qwen3vl-mol-fw-gpu1")
    assert reach("out1", "gpu1", 7860) == "open"
    assert reach("mon1", "gpu1", 7860) == "refused"
    converge(limit="qwen3vl-mol-fw-gpu1")
    assert reach("out1", "gpu1", 7860) == "refused"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"firewall_admin_sources": []}, "firewall_admin_sources: must list at least one address"),
        (
            {"firewall_client_sources": ["10.0.0.300/8"]},
            "firewall_client_sources[0]: '10.0.0.300/8' is not an IP network",
        ),
        (
            {"firewall_allow": [{"ports": [53], "proto": "udp", "sources": ["@nosuchgroup"]}]},
            "firewall_allow[0].sources[0]: @nosuchgroup names no inventory group",
        ),
        ({"qwen3vl_firewall_address": "lb1.example.internal"}, "'lb1.example.internal' is not an IP address"),
    ],
    ids=["no-admin", "bad-network", "unknown-group", "no-address"],
)
def test_bad_input_fails_before_anything_changes(extra, expected):
    before = hashlib.sha256(sh(container("gpu1"), "nft list table " + TABLE).stdout.encode()).hexdigest()
    rc, out = converge(extra, limit="qwen3vl-mol-fw-gpu1", expect_rc=None)
    assert rc != 0, out[-3000:]
    assert expected in out, out[-3000:]
    assert recap_changed(out) == 0, out[-3000:]
    after = hashlib.sha256(sh(container("gpu1"), "nft list table " + TABLE).stdout.encode()).hexdigest()
    assert before == after


def test_check_on_a_new_host_changes_nothing():
    """--check on a host without nftables: the run passes and reports what it would do; nothing is installed."""
    rc, out = converge(check=True, limit="qwen3vl-mol-fw-out1", playbook=SCENARIO / "outsider.yml", expect_rc=0)
    assert recap_changed(out, "qwen3vl-mol-fw-out1") > 0, out[-3000:]
    assert sh(container("out1"), "command -v nft", check=False).returncode != 0
    assert sh(container("out1"), "test -e " + RULES, check=False).returncode != 0
