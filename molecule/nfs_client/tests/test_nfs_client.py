"""nfs_client: the exact /etc/fstab entries, the mount points, systemd's view of them, and the preflight.

This kernel cannot mount NFS, so the scenario runs with nfs_client_mount_state: present: what is checked
is what the role writes and what systemd makes of it (the fstab generator's mount units: a nofail mount
is only wanted by remote-fs.target, so it never holds up boot). The server the preflight asks is the
scenario's own NFS-Ganesha container; the "unreachable" cases use that container with its server
stopped, and an address of the scenario's own network that no container holds.
"""

import functools
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

SCENARIO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SCENARIO.parent / "shared"))
from playbook_run import recap_changed, run_converge  # noqa: E402

converge = functools.partial(run_converge, SCENARIO, expect_rc=None)
ROLE = SCENARIO.parents[1] / "roles" / "nfs_client"
CLIENT, SERVER = "qwen3vl-mol-nfsc-client", "qwen3vl-mol-nfsc-server"
GROUP_VARS = yaml.safe_load((SCENARIO / "molecule.yml").read_text())["provisioner"]["inventory"]["group_vars"]
MOUNTS = GROUP_VARS["nfs_client"]["nfs_client_mounts"]
DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
# an address of the scenario's own network that no container holds
NOBODY = "172.29.83.99"


def sh(command, *, host=CLIENT, check=True, timeout=60):
    proc = subprocess.run(
        ["docker", "exec", host, "sh", "-c", command], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check:
        assert proc.returncode == 0, f"{host}: {command}\n{proc.stdout}\n{proc.stderr}"
    return proc


def fstab_entries():
    return [line.split() for line in sh("cat /etc/fstab").stdout.splitlines() if line and not line.startswith("#")]


def expected_options(extra):
    d = DEFAULTS
    return ",".join(
        [
            f"nfsvers={d['nfs_client_nfs_version']}",
            "proto=tcp",
            "hard" if d["nfs_client_hard"] else "soft",
            "nosuid",
            "nodev",
            f"timeo={d['nfs_client_timeo']}",
            f"retrans={d['nfs_client_retrans']}",
            "_netdev",
            "nofail",
            f"x-systemd.mount-timeout={d['nfs_client_mount_timeout']}",
            *extra,
        ]
    )


def test_fstab_has_exactly_the_configured_entries():
    assert fstab_entries() == [
        [
            f"{m['server']}:{m['export']}",
            m["path"],
            "nfs",
            expected_options(m.get("options", DEFAULTS["nfs_client_extra_options"])),
            "0",
            "0",
        ]
        for m in MOUNTS
    ]
    # the literal first line too, so a change in the defaults cannot hide a change in the rendering
    assert (
        fstab_entries()[0][3]
        == "nfsvers=4.1,proto=tcp,hard,nosuid,nodev,timeo=600,retrans=2,_netdev,nofail,x-systemd.mount-timeout=30"
    )


def test_mount_points_exist_with_their_mode():
    for mount in MOUNTS:
        stat = sh(f"stat -c '%F %U:%G %a' {mount['path']}").stdout.strip()
        assert stat == f"directory root:root {int(mount.get('mode', '0755'), 8):o}"


def test_nfs_common_is_installed():
    assert sh("test -x /sbin/mount.nfs && dpkg-query -W -f '${Status}' nfs-common").stdout == "install ok installed"


def test_systemd_reads_the_entries_as_mounts_that_do_not_hold_up_boot():
    for mount in MOUNTS:
        unit = sh(f"systemd-escape --path --suffix=mount {mount['path']}").stdout.strip()
        show = sh(f"systemctl show -p What -p Type -p Options -p WantedBy -p RequiredBy -p TimeoutUSec '{unit}'").stdout
        props = dict(line.split("=", 1) for line in show.splitlines() if "=" in line)
        assert props["What"] == f"{mount['server']}:{mount['export']}"
        assert props["Type"] == "nfs"
        assert "nofail" in props["Options"].split(",")
        # nofail: remote-fs.target only wants the mount, so boot does not wait for (or fail on) it
        assert props["RequiredBy"] == ""
        assert "remote-fs.target" in props["WantedBy"].split()
        assert props["TimeoutUSec"] == f"{DEFAULTS['nfs_client_mount_timeout']}s"


def test_automount_mode_writes_x_systemd_automount_instead_of_nofail():
    rc, out = converge({"nfs_client_boot_mode": "automount"})
    try:
        assert rc == 0, out[-4000:]
        options = fstab_entries()[0][3].split(",")
        assert "x-systemd.automount" in options and "nofail" not in options
        assert f"x-systemd.idle-timeout={DEFAULTS['nfs_client_idle_timeout']}" in options
        unit = sh(f"systemd-escape --path --suffix=automount {MOUNTS[0]['path']}").stdout.strip()
        assert sh(f"systemctl show -p LoadState '{unit}'").stdout.strip() == "LoadState=loaded"
    finally:
        rc, out = converge()
        assert rc == 0, out[-4000:]
    assert fstab_entries()[0][3] == expected_options([])


def test_soft_is_written_when_chosen():
    rc, out = converge({"nfs_client_hard": False}, check=True)
    assert rc == 0, out[-4000:]
    assert recap_changed(out) >= 1  # the fstab line would change to soft (check mode: nothing written)
    assert "hard" in fstab_entries()[0][3].split(",")


def unreachable_converge(server):
    mounts = [dict(MOUNTS[0], server=server, path="/mnt/qwen3vl-elsewhere")]
    before = sh("md5sum /etc/fstab").stdout
    started = time.monotonic()
    rc, out = converge({"nfs_client_mounts": mounts})
    elapsed = time.monotonic() - started
    assert rc != 0
    assert "nfs_client_mounts[].server" in out and server in out and "TCP 2049" in out
    assert recap_changed(out) == 0
    assert sh("md5sum /etc/fstab").stdout == before
    assert sh("test -e /mnt/qwen3vl-elsewhere", check=False).returncode != 0
    return elapsed


def test_preflight_fails_fast_and_clearly_when_the_server_is_stopped():
    sh("systemctl stop nfs-ganesha", host=SERVER)
    try:
        elapsed = unreachable_converge(MOUNTS[0]["server"])
    finally:
        sh("systemctl start nfs-ganesha", host=SERVER)
    print(f"\npreflight with the server stopped (connection refused): whole converge {elapsed:.1f} s")


def test_preflight_fails_within_its_timeout_when_nothing_answers():
    elapsed = unreachable_converge(NOBODY)
    print(f"\npreflight against an address nobody holds: whole converge {elapsed:.1f} s")
    # the run is the role's preflight (a few seconds of tasks) plus one wait of nfs_client_preflight_timeout,
    # not a mount hanging for minutes
    assert elapsed < DEFAULTS["nfs_client_preflight_timeout"] + 60


@pytest.mark.parametrize(
    ("setup", "mounts", "message"),
    [
        (
            "mkdir -p /srv && echo x > /srv/a-file",
            [{"server": "172.29.83.10", "export": "/srv/qwen3vl/data", "path": "/srv/a-file"}],
            "nfs_client_mounts[0].path: /srv/a-file exists and is not a directory (a file)",
        ),
        (
            "mkdir -p /srv/busy && echo x > /srv/busy/keep.txt",
            [{"server": "172.29.83.10", "export": "/srv/qwen3vl/data", "path": "/srv/busy"}],
            "nfs_client_mounts[0].path: /srv/busy is not empty (it holds /srv/busy/keep.txt)",
        ),
        ("true", [{"server": "172.29.83.10", "export": "/srv/qwen3vl/data", "path": "/"}], "nfs_client_mounts[0].path"),
        ("true", [{"server": "a b", "export": "/x", "path": "/mnt/x"}], "nfs_client_mounts[0].server"),
        (
            "true",
            [{"server": "172.29.83.10", "export": "/x", "path": "/mnt/x", "options": ["soft"]}],
            "nfs_client_mounts[0].options: 'soft' is set by the role (nfs_client_hard)",
        ),
    ],
)
def test_bad_mounts_fail_in_preflight_naming_the_variable_with_nothing_changed(setup, mounts, message):
    sh(setup)
    before = sh("md5sum /etc/fstab").stdout
    rc, out = converge({"nfs_client_mounts": mounts})
    assert rc != 0
    assert message in out, out[-3000:]
    assert recap_changed(out) == 0
    assert sh("md5sum /etc/fstab").stdout == before


def test_a_non_empty_mount_point_is_accepted_when_allowed():
    sh("mkdir -p /srv/busy && echo x > /srv/busy/keep.txt")
    mounts = [{"server": "172.29.83.10", "export": "/srv/qwen3vl/data", "path": "/srv/busy"}]
    rc, out = converge({"nfs_client_mounts": mounts, "nfs_client_allow_nonempty": True}, check=True)
    assert rc == 0, out[-4000:]


def test_the_role_own_mount_point_with_data_in_it_is_not_refused_on_a_re_run():
    # present mode in the lab: the WebUI writes into the mount point; the next run must still pass
    sh(f"echo session > {MOUNTS[0]['path']}/history.json")
    try:
        rc, out = converge()
        assert rc == 0, out[-4000:]
        assert recap_changed(out) == 0
    finally:
        sh(f"rm -f {MOUNTS[0]['path']}/history.json")
