"""nfs_server: NFS-Ganesha exports used over the network by userspace NFS clients (libnfs), and the kernel
implementation's exports checked by exportfs.

Every NFS request goes from the scenario's own client containers to the scenario's own server container
(docker exec, then libnfs over the scenario's docker network). Bytes written through one client are read
back through another; ownership is read on the server's disk.

libnfs 4.0 (Debian 12) cannot write files larger than about 3 KB over NFSv4 ("Failed to write to dest
file", the file left empty; reads of any size work), so written payloads are 2 KiB and the large-file
check reads a 3 MiB file the server side put in place.
"""

import functools
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

SCENARIO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SCENARIO.parent / "shared"))
from playbook_run import recap_changed, run_converge  # noqa: E402

converge = functools.partial(run_converge, SCENARIO, expect_rc=None)
SERVER, KERNEL = "qwen3vl-mol-nfs-server", "qwen3vl-mol-nfs-kernel"
CLIENT1, CLIENT2, OUTSIDER = "qwen3vl-mol-nfs-client1", "qwen3vl-mol-nfs-client2", "qwen3vl-mol-nfs-outsider"
SERVER_IP = "172.29.82.10"
OUTSIDER_IP = "172.29.82.40"
EXPORTS = yaml.safe_load((SCENARIO / "molecule.yml").read_text())["provisioner"]["inventory"]["group_vars"]["all"][
    "nfs_server_exports"
]
DATA, MODELS = EXPORTS[0]["path"], EXPORTS[1]["path"]


def sh(name, command, *, check=True, timeout=120, stdin=None):
    proc = subprocess.run(
        ["docker", "exec", "-i", name, "sh", "-c", command],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if check:
        assert proc.returncode == 0, f"{name}: {command}\n{proc.stdout!r}\n{proc.stderr!r}"
    return proc


def url(path, **params):
    query = "&".join(["version=4"] + [f"{key}={value}" for key, value in params.items()])
    return f"nfs://{SERVER_IP}{path}?{query}"


def nfs_write(client, path, payload, **params):
    """Write `payload` to `path` on the server through libnfs on `client` (as root unless uid is given)."""
    name = f"/tmp/upload-{os.getpid()}"
    sh(client, f"cat > {name}", stdin=payload)
    return sh(client, f"nfs-cp {name} '{url(path, **params)}'", check=False)


def nfs_read(client, path, **params):
    name = f"/tmp/download-{os.getpid()}"
    sh(client, f"rm -f {name}")
    proc = sh(client, f"nfs-cp '{url(path, **params)}' {name} >/dev/null && cat {name}", check=False)
    return proc


def test_the_ganesha_service_runs_and_answers_on_2049():
    assert sh(SERVER, "systemctl is-active nfs-ganesha").stdout.strip() == b"active"
    assert sh(SERVER, "systemctl is-enabled nfs-ganesha").stdout.strip() == b"enabled"
    assert b":2049 " in sh(SERVER, "ss -ltnH").stdout
    listed = sh(CLIENT1, f"nfs-ls '{url(DATA)}'", check=False)
    assert listed.returncode == 0, listed.stderr


def test_every_export_requires_a_privileged_source_port_and_root_clients_still_get_in():
    """privileged_port (default true): Ganesha's PrivilegedPort on every export; the clients here (libnfs as
    root, which binds a port below 1024) are served. A client on an unprivileged port is not tried: in a Docker
    container any user may bind low ports (net.ipv4.ip_unprivileged_port_start=0) and /proc/sys is read-only."""
    config = sh(SERVER, "cat /etc/ganesha/qwen3vl-exports.conf").stdout.decode()
    assert config.count("PrivilegedPort = true;") == len(EXPORTS) == config.count("EXPORT {"), config
    assert sh(CLIENT1, f"nfs-ls '{url(DATA)}'", check=False).returncode == 0


def test_exported_directories_have_the_configured_owner_and_mode():
    for export in EXPORTS:
        stat = sh(SERVER, f"stat -c '%u:%g %a' {export['path']}").stdout.decode().strip()
        owner = export.get("owner", "0").replace("root", "0")
        group = export.get("group", "0").replace("root", "0")
        assert stat == f"{owner}:{group} {int(export.get('mode', '0755'), 8):o}", export


def test_a_file_written_on_one_client_is_read_on_another_with_the_same_bytes():
    payload = os.urandom(2048)
    path = f"{DATA}/shared-{os.getpid()}.bin"
    written = nfs_write(CLIENT1, path, payload)
    assert written.returncode == 0, written.stderr
    read = nfs_read(CLIENT2, path)
    assert read.returncode == 0, read.stderr
    assert hashlib.sha256(read.stdout).hexdigest() == hashlib.sha256(payload).hexdigest()
    on_disk = sh(SERVER, f"cat {path}").stdout
    assert on_disk == payload


def test_root_is_squashed_to_the_anonymous_uid():
    path = f"{DATA}/by-root-{os.getpid()}.txt"
    written = nfs_write(CLIENT1, path, b"written as root\n")
    assert written.returncode == 0, written.stderr
    owner = sh(SERVER, f"stat -c '%u:%g' {path}").stdout.decode().strip()
    anon = f"{EXPORTS[0].get('anonuid', 65534)}:{EXPORTS[0].get('anongid', 65534)}"
    assert owner == anon, f"a file root created over NFS is owned by {owner}, not the anonymous {anon}"


def test_a_user_outside_the_directory_group_is_refused_by_its_mode():
    # data is 65534:65534 0770: uid 1000 is neither owner nor group, so the server refuses the create
    written = nfs_write(CLIENT1, f"{DATA}/by-1000-{os.getpid()}.txt", b"x", uid=1000, gid=1000)
    assert written.returncode != 0
    assert b"ACCESS" in written.stderr


def test_a_large_file_reads_back_whole_and_the_read_only_export_refuses_writes():
    payload = os.urandom(3 * 1024 * 1024)
    path = f"{MODELS}/weights-{os.getpid()}.bin"
    sh(SERVER, f"cat > {path} && chmod 0644 {path}", stdin=payload)
    read = nfs_read(CLIENT2, path)
    assert read.returncode == 0, read.stderr
    assert hashlib.sha256(read.stdout).digest() == hashlib.sha256(payload).digest()
    written = nfs_write(CLIENT1, f"{MODELS}/not-allowed-{os.getpid()}.txt", b"x")
    assert written.returncode != 0
    assert sh(SERVER, f"ls {MODELS}").stdout.count(b"not-allowed") == 0


def test_a_client_outside_the_allowed_subnet_is_refused():
    proc = sh(OUTSIDER, f"nfs-ls '{url(DATA)}'", check=False)
    assert proc.returncode != 0
    assert b"NFS4ERR" in proc.stderr, proc.stderr
    assert nfs_read(OUTSIDER, f"{DATA}/anything").returncode != 0


def test_nfsv3_is_not_served_by_default():
    proc = sh(CLIENT1, f"nfs-ls 'nfs://{SERVER_IP}{DATA}?version=3'", check=False)
    assert proc.returncode != 0, proc.stdout


def test_an_added_client_is_let_in_by_a_reload_and_removed_again_without_a_restart():
    pid = sh(SERVER, "pgrep -x ganesha.nfsd").stdout.strip()
    wider = [dict(EXPORTS[0], clients=EXPORTS[0]["clients"] + [OUTSIDER_IP]), EXPORTS[1]]
    # the Ganesha host alone (--limit): the kernel host's rendering of the same exports has its own tests
    rc, out = converge({"nfs_server_exports": wider}, limit=SERVER)
    assert rc == 0, out[-4000:]
    assert "Apply the Ganesha exports (SIGHUP)" in out
    try:
        assert sh(OUTSIDER, f"nfs-ls '{url(DATA)}'", check=False).returncode == 0
    finally:
        rc, out = converge(limit=SERVER)
        assert rc == 0, out[-4000:]
    assert sh(OUTSIDER, f"nfs-ls '{url(DATA)}'", check=False).returncode != 0
    assert sh(SERVER, "pgrep -x ganesha.nfsd").stdout.strip() == pid, "the server was restarted, not reloaded"


def test_a_core_setting_change_restarts_the_server():
    pid = sh(SERVER, "pgrep -x ganesha.nfsd").stdout.strip()
    # both timers: the role refuses a grace period below the lease (90 s by default); the Ganesha host alone
    rc, out = converge({"nfs_server_grace_period": 11, "nfs_server_lease_time": 10}, limit=SERVER)
    try:
        assert rc == 0, out[-4000:]
        assert "Restart the running NFS server" in out
        assert sh(SERVER, "grep -c 'Grace_Period = 11;' /etc/ganesha/ganesha.conf").stdout.strip() == b"1"
        assert sh(SERVER, "pgrep -x ganesha.nfsd").stdout.strip() != pid
    finally:
        rc, out = converge(limit=SERVER)
        assert rc == 0, out[-4000:]


def test_the_kernel_exports_file_holds_exactly_the_exports():
    text = sh(KERNEL, "cat /etc/exports.d/qwen3vl.exports").stdout.decode()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines == [
        f"{DATA} 172.29.82.16/28(rw,root_squash,sec=sys,anonuid=65534,anongid=65534,secure,sync,no_subtree_check)",
        f"{MODELS} 172.29.82.16/28(ro,root_squash,sec=sys,anonuid=65534,anongid=65534,secure,sync,no_subtree_check)",
    ]
    # exportfs -ra applied them (it works without a running nfsd: the table is written to etab)
    table = sh(KERNEL, "exportfs -v").stdout.decode()
    assert DATA in table and "root_squash" in table and "ro," in table
    conf = sh(KERNEL, "cat /etc/nfs.conf.d/qwen3vl.conf").stdout.decode()
    assert "vers3=n" in conf and "vers4=y" in conf


def test_the_exports_check_rejects_a_bad_file_and_leaves_the_live_table_alone():
    before = sh(KERNEL, "cat /var/lib/nfs/etab").stdout
    sh(KERNEL, "echo '/srv/qwen3vl/data 10.0.0.0/24(rw,no_such_option)' > /tmp/bad.exports")
    bad = sh(KERNEL, "qwen3vl-exports-check /tmp/bad.exports", check=False)
    assert bad.returncode == 1
    assert b'unknown keyword "no_such_option"' in bad.stderr
    sh(KERNEL, "echo '/srv/qwen3vl/data 10.0.0.0/24(rw,sync,no_subtree_check)' > /tmp/good.exports")
    assert sh(KERNEL, "qwen3vl-exports-check /tmp/good.exports", check=False).returncode == 0
    assert sh(KERNEL, "cat /var/lib/nfs/etab").stdout == before


def config_sums():
    files = "/etc/ganesha/qwen3vl-exports.conf /etc/exports.d/qwen3vl.exports /var/lib/nfs/etab"
    return {host: sh(host, f"md5sum {files} 2>/dev/null; true").stdout for host in (SERVER, KERNEL)}


@pytest.mark.parametrize(
    ("exports", "variable"),
    [
        ([{"path": "/", "clients": ["172.29.82.16/28"]}], "nfs_server_exports[0].path"),
        ([{"path": "/srv/qwen3vl/data", "clients": ["*"]}], "nfs_server_exports[0].clients[0]"),
        ([{"path": "/srv/qwen3vl/data", "clients": ["0.0.0.0/0"]}], "nfs_server_exports[0].clients[0]"),
        (
            [{"path": "/srv/qwen3vl/data", "clients": ["172.29.82.16/28"], "options": ["async", "bogus"]}],
            "nfs_server_exports[0].options",
        ),
        (
            [{"path": "/srv/qwen3vl/data", "clients": ["172.29.82.16/28"], "options": ["no_root_squash"]}],
            "nfs_server_exports[0].options",
        ),
    ],
)
def test_bad_exports_fail_in_preflight_naming_the_variable_with_nothing_changed(exports, variable):
    before = config_sums()
    rc, out = converge({"nfs_server_exports": exports})
    assert rc != 0
    assert variable in out
    assert "Refuse exports and settings the server must not run with" in out
    assert recap_changed(out) == 0
    assert config_sums() == before


def test_any_client_is_accepted_only_when_explicitly_allowed():
    world = {"nfs_server_exports": [{"path": DATA, "clients": ["*"]}], "nfs_server_allow_any_client": True}
    rc, out = converge(world, check=True)
    assert rc == 0, out[-4000:]


def test_a_second_converge_changes_nothing():
    rc, out = converge()
    assert rc == 0, out[-4000:]
    assert recap_changed(out) == 0
