"""A real Linux NFS client against NFS-Ganesha: the fstab entry that the nfs_client role writes, booted in
a small qemu VM (software emulation, Debian 12 cloud kernel).

  1. server up at boot: the kernel mounts the entry during boot, data moves both ways;
  2. server missing at boot: boot still finishes (running/degraded) in a bounded time, no mount;
  3. automount variant: boot without a server is not blocked, the mount happens on first access
     once the server is up;
  4. the server restarted (with the nfs_server role's grace period) while the guest saves sessions:
     saves wait, none fails, the wait is bounded by the settings, every save is intact.

The entry's options are the nfs_client role's own (its defaults through the same function its filter
uses), unless QWEN3VL_VM_NFS_OPTIONS (tests 1 and 2) or QWEN3VL_VM_NFS_AUTOMOUNT_OPTIONS (test 3)
give other strings.

Network: the guest is on qemu's user network with restrict=on (it reaches nothing but the one
forwarded address); a connection to 10.0.2.100:2049 runs `socat` on the host to the Ganesha
container on an --internal docker network that the test creates. Ganesha sees the network's
gateway address and exports to that one address only.

The guest runs a small agent on its second serial port (a unix socket here): the test sends shell
scripts and gets their exit status and output back. See tests/vm/README.md."""

import base64
import hashlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "tests" / "vm" / "build-vm.sh"

MOUNTPOINT = "/srv/qwen3vl-data"
MOUNT_UNIT = r"srv-qwen3vl\x2ddata.mount"
AUTOMOUNT_UNIT = r"srv-qwen3vl\x2ddata.automount"
SERVER_GUEST_ADDR = "10.0.2.100"  # the guestfwd address inside qemu's user network
EXPORT = "/export"  # Ganesha's pseudo path (and the path inside its container)


def role_options(boot_mode):
    """The options the nfs_client role writes with its defaults: the same function its filter calls."""
    spec = importlib.util.spec_from_file_location("nfs_plan", REPO / "plugins" / "module_utils" / "nfs_plan.py")
    nfs_plan = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(nfs_plan)
    defaults = yaml.safe_load((REPO / "roles" / "nfs_client" / "defaults" / "main.yml").read_text())
    settings = {key.removeprefix("nfs_client_"): value for key, value in defaults.items()}
    settings["boot_mode"] = boot_mode
    return ",".join(nfs_plan.client_options(settings))


NOFAIL_OPTIONS = role_options("nofail")
AUTOMOUNT_OPTIONS = role_options("automount")
OPTIONS = os.environ.get("QWEN3VL_VM_NFS_OPTIONS", NOFAIL_OPTIONS)
AUTO_OPTIONS = os.environ.get("QWEN3VL_VM_NFS_AUTOMOUNT_OPTIONS", AUTOMOUNT_OPTIONS)

# Host seconds from starting qemu to the guest agent's "ready" (multi-user.target reached).
# Measured here: about 20 s under TCG on 2 cores; the limit leaves room for a slower machine.
BOOT_TIMEOUT = float(os.environ.get("QWEN3VL_VM_BOOT_TIMEOUT", "300"))
# Guest seconds (since the kernel started) within which multi-user.target must be reached whether
# or not the server answers. Measured: 18-20 s; 120 s is six times that.
MULTI_USER_BUDGET = float(os.environ.get("QWEN3VL_VM_MULTI_USER_BUDGET", "120"))
# systemd's default when an entry has no x-systemd.mount-timeout (DefaultTimeoutStartSec)
SYSTEMD_DEFAULT_TIMEOUT = 90.0
# After the mount job gives up: seconds for systemd to kill mount.nfs and finish the boot.
SETTLE_SLACK = 20.0

# Userspace-only fstab options: they never show up in the kernel's mount options.
USERSPACE_OPTIONS = {"_netdev", "nofail", "auto", "noauto", "defaults", "user", "users", "nouser", "owner", "group"}

GANESHA_CONF = """\
NFS_CORE_PARAM {{
    Protocols = 4;
    NFS_Port = 2049;
    Enable_NLM = false;
    Enable_RQUOTA = false;
    Enable_UDP = false;
}}
NFSv4 {{
{nfsv4}
    Minor_Versions = 1, 2;
}}
LOG {{ Default_Log_Level = EVENT; }}
EXPORT_DEFAULTS {{ Access_Type = None; }}
EXPORT {{
    Export_Id = 1;
    Path = {export};
    Pseudo = {export};
    Protocols = 4;
    Transports = TCP;
    SecType = sys;
    Squash = No_Root_Squash;
    Access_Type = None;
    FSAL {{ Name = VFS; }}
    CLIENT {{ Clients = {client}; Access_Type = RW; }}
}}
"""

# No 90 s grace period after a start: a fresh server has no state to recover. The restart test uses the
# nfs_server role's Grace_Period and Lease_Lifetime instead (server_grace()).
GRACELESS = "    Graceless = true;"

LABEL = "qwen3vl.vmtest.pid"


def run(*cmd, timeout=120, check=True):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check)


def timespan_seconds(text):
    """systemd's '1min 30s' / '30s' / '500ms' / 'infinity' as seconds."""
    if text.strip() == "infinity":
        return float("inf")
    units = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
    total = 0.0
    for number, unit in re.findall(r"([\d.]+)\s*(us|ms|min|s|h|d)", text):
        total += float(number) * units[unit]
    return total


def option_value(options, name):
    for opt in options.split(","):
        key, _sep, value = opt.partition("=")
        if key == name:
            return value
    return None


def has_option(options, name):
    return any(opt.partition("=")[0] == name for opt in options.split(","))


def expected_kernel_options(options):
    """The options of the fstab string that the kernel reports back (nfsvers=X shows as vers=X)."""
    wanted = set()
    for opt in options.split(","):
        if not opt or opt in USERSPACE_OPTIONS or opt.startswith("x-"):
            continue
        key, sep, value = opt.partition("=")
        key = {"nfsvers": "vers"}.get(key, key)
        wanted.add(f"{key}={value}" if sep else key)
    return wanted


def option_seconds(value):
    """An x-systemd.*-timeout value: plain seconds or a systemd timespan."""
    return float(value) if re.fullmatch(r"[\d.]+", value) else timespan_seconds(value)


def mount_timeout(options):
    value = option_value(options, "x-systemd.mount-timeout")
    return option_seconds(value) if value else SYSTEMD_DEFAULT_TIMEOUT


# --- the guest ---------------------------------------------------------------------------------


class Agent:
    """The line protocol to the guest agent on its ttyS1: send 'ID LIMIT BASE64-SCRIPT', get
    'QWEN3VL ID RC BASE64-OUTPUT'."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.next_id = 0

    def read_line(self, deadline, alive):
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no line from the guest agent in time")
            if not alive():
                raise RuntimeError("qemu exited")
            self.sock.settimeout(min(left, 1.0))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise RuntimeError("the agent socket closed (qemu exited)")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode(errors="replace").strip()

    def wait_ready(self, timeout, alive):
        deadline = time.monotonic() + timeout
        while True:
            parts = self.read_line(deadline, alive).split()
            if parts[:2] == ["QWEN3VL", "ready"]:
                return float(parts[2])

    def sh(self, script, *, timeout, alive):
        self.next_id += 1
        ident = str(self.next_id)
        payload = base64.b64encode(script.encode()).decode()
        self.sock.sendall(f"{ident} {int(timeout)} {payload}\n".encode())
        deadline = time.monotonic() + timeout + 30
        while True:
            parts = self.read_line(deadline, alive).split()
            if parts[:2] == ["QWEN3VL", ident]:
                out = base64.b64decode(parts[3]).decode(errors="replace") if len(parts) > 3 else ""
                return int(parts[2]), out


@dataclass
class Vm:
    name: str
    workdir: Path
    proc: subprocess.Popen
    started: float
    sockdir: Path
    agent: Agent | None = None
    ready_host_s: float = 0.0
    ready_guest_s: float = 0.0

    @property
    def console(self):
        return self.workdir / "console.log"

    def alive(self):
        return self.proc.poll() is None

    def console_tail(self, lines=60):
        try:
            text = self.console.read_text(errors="replace")
        except OSError:
            return "(no console log)"
        return f"--- {self.name}: last {lines} console lines ({self.console}) ---\n" + "\n".join(
            text.splitlines()[-lines:]
        )

    def sh(self, script, *, timeout=120):
        return self.agent.sh(script, timeout=timeout, alive=self.alive)

    def check(self, script, *, timeout=120):
        rc, out = self.sh(script, timeout=timeout)
        assert rc == 0, f"guest: `{script}` exited {rc}:\n{out}\n{self.console_tail()}"
        return out

    def show(self, unit, *props):
        out = self.check(f"systemctl show {quote(unit)} " + " ".join(f"-p {p}" for p in props))
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def monotonic_s(self, unit, prop="ActiveEnterTimestampMonotonic"):
        return int(self.show(unit, prop)[prop]) / 1e6

    def system_state(self, *, timeout):
        """`systemctl is-system-running --wait` in the guest: (state, guest uptime, host seconds since qemu start)."""
        out = self.check("systemctl is-system-running --wait; cut -d' ' -f1 /proc/uptime; exit 0", timeout=timeout)
        state, uptime = out.split()[:2]
        return state, float(uptime), time.monotonic() - self.started

    def mounts_at(self, target):
        out = self.check("findmnt -J -l -o TARGET,SOURCE,FSTYPE,OPTIONS")
        return [fs for fs in json.loads(out)["filesystems"] if fs["target"] == target]

    def diag(self):
        """Failed units, the mount units and the journal's end, for assertion messages."""
        try:
            _rc, out = self.sh(
                "systemctl --failed --no-pager; systemctl status --no-pager "
                f"{quote(MOUNT_UNIT)} {quote(AUTOMOUNT_UNIT)}; journalctl -b -o short-monotonic --no-pager | tail -n 40",
                timeout=60,
            )
        except (TimeoutError, RuntimeError, OSError) as exc:
            out = f"(no answer from the guest agent: {exc})"
        return out + "\n" + self.console_tail(30)

    def stop(self):
        if self.agent:
            self.agent.sock.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        (self.workdir / "root.img").unlink(missing_ok=True)
        shutil.rmtree(self.sockdir, ignore_errors=True)


def quote(text):
    return "'" + text.replace("'", "'\"'\"'") + "'"


def write_fstab(image, workdir, line):
    """Put the NFS entry into /etc/fstab of this boot's copy of the root disk (no mount needed)."""
    fstab = workdir / "fstab"
    fstab.write_text(f"/dev/vda / ext4 rw,errors=remount-ro 0 0\n{line}\n")
    cmds = workdir / "debugfs.cmds"
    cmds.write_text(f"rm /etc/fstab\nwrite {fstab} /etc/fstab\n")
    run("debugfs", "-w", "-f", str(cmds), str(image))
    back = run("debugfs", "-R", "cat /etc/fstab", str(image)).stdout
    assert back == fstab.read_text(), f"fstab in the disk image reads back as:\n{back}"


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def vm_assets():
    """build-vm.sh: kernel, initrd, root disk (cached under .cache/vm) and the Ganesha image."""
    t0 = time.monotonic()
    proc = run("bash", str(BUILD_SCRIPT), timeout=1800, check=False)
    assert proc.returncode == 0, f"build-vm.sh failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    assets = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    for key in ("KERNEL", "INITRD", "ROOT_IMAGE", "GANESHA_IMAGE"):
        assert key in assets, f"build-vm.sh printed no {key}:\n{proc.stdout}"
    print(f"\n[vm] build-vm.sh took {time.monotonic() - t0:.1f}s")
    return assets


@dataclass
class Net:
    name: str
    gateway: str
    server_ip: str


def labelled(kind):
    """(id, pid) of the containers or networks that carry our label."""
    ls = ["docker", "ps", "-a"] if kind == "container" else ["docker", "network", "ls"]
    fmt = '{{.ID}} {{.Label "%s"}}' % LABEL
    out = run(*ls, "--filter", f"label={LABEL}", "--format", fmt, check=False).stdout
    return [tuple(line.split(" ", 1)) for line in out.splitlines() if " " in line]


def remove_stale():
    """Containers, networks and socket folders left behind by earlier runs whose pytest process is gone."""
    for kind in ("container", "network"):
        for ident, pid in labelled(kind):
            if not (pid.isdigit() and Path(f"/proc/{pid}").exists()):
                rm = ["docker", "rm", "-f"] if kind == "container" else ["docker", "network", "rm"]
                run(*rm, ident, check=False)
    for sockdir in Path(tempfile.gettempdir()).glob("qwen3vl-vm-*-*"):
        pid = sockdir.name.split("-")[2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(sockdir, ignore_errors=True)


@pytest.fixture(scope="module")
def nfs_net(vm_assets):
    """An --internal docker network (no route out) for the Ganesha container; the host's address on it
    (the gateway) is the only NFS client address the server sees."""
    remove_stale()
    name = f"qwen3vl-vmtest-{os.getpid()}"
    candidates = [f"172.30.{n}" for n in range(200, 216)] + [f"10.213.{n}" for n in range(16)]
    errors = []
    for prefix in candidates:
        create = [
            "docker", "network", "create", "--internal", "--subnet", f"{prefix}.0/29", "--gateway", f"{prefix}.1",
            "--label", f"{LABEL}={os.getpid()}", name,
        ]  # fmt: skip
        proc = run(*create, check=False)
        if proc.returncode == 0:
            break
        errors.append(proc.stderr.strip())
    else:
        pytest.fail("could not create a docker network on any candidate subnet:\n" + "\n".join(errors[-3:]))
    yield Net(name=name, gateway=f"{prefix}.1", server_ip=f"{prefix}.2")
    leftovers = run("docker", "ps", "-aq", "--filter", f"network={name}", check=False).stdout.split()
    if leftovers:
        run("docker", "rm", "-f", *leftovers, check=False)
    run("docker", "network", "rm", name, check=False)


@dataclass
class Server:
    container: str
    export_dir: Path

    def peers(self):
        """Remote addresses of the established NFS connections, as the server sees them."""
        out = run("docker", "exec", self.container, "ss", "-Htn", "state", "established", "( sport = :2049 )").stdout
        peers = []
        for line in out.splitlines():
            remote = line.split()[-1]
            peers.append(remote.rsplit(":", 1)[0].removeprefix("[::ffff:").removesuffix("]"))
        return peers


@pytest.fixture
def nfs_server(vm_assets, nfs_net, tmp_path):
    """start(export_dir) runs Ganesha in a container on nfs_net; removed again after the test."""
    started = []

    def start(export_dir, nfsv4=GRACELESS):
        conf = tmp_path / "ganesha.conf"
        conf.write_text(GANESHA_CONF.format(export=EXPORT, client=nfs_net.gateway, nfsv4=nfsv4))
        name = f"qwen3vl-vmtest-ganesha-{os.getpid()}-{len(started)}"
        started.append(name)
        docker_run = [
            "docker", "run", "-d", "--name", name, "--label", f"{LABEL}={os.getpid()}",
            "--network", nfs_net.name, "--ip", nfs_net.server_ip,
            # VFS needs open_by_handle_at: CAP_DAC_READ_SEARCH, and engine 20.10's seccomp profile
            # refuses it even with that capability
            "--cap-add", "DAC_READ_SEARCH", "--security-opt", "seccomp=unconfined",
            "-v", f"{export_dir}:{EXPORT}", "-v", f"{conf}:/etc/ganesha/ganesha.conf:ro",
            vm_assets["GANESHA_IMAGE"],
            "ganesha.nfsd", "-F", "-L", "/dev/stdout", "-f", "/etc/ganesha/ganesha.conf", "-p", "/run/ganesha/ganesha.pid",
        ]  # fmt: skip
        run(*docker_run)
        deadline = time.monotonic() + 60
        logs = ""
        while time.monotonic() < deadline:
            logs = run("docker", "logs", name, check=False).stdout
            if "NFS SERVER INITIALIZED" in logs and port_open(nfs_net.server_ip, 2049):
                return Server(container=name, export_dir=export_dir)
            time.sleep(0.5)
        pytest.fail(f"Ganesha did not come up within 60s:\n{logs[-3000:]}")

    yield start
    for name in started:
        run("docker", "rm", "-f", name, check=False)


def port_open(host, port):
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def boot_vm(vm_assets, nfs_net, tmp_path):
    """boot(options=..., name=...) starts the VM with that fstab entry and waits for the agent."""
    vms = []

    def boot(*, options, name):
        workdir = tmp_path / name
        workdir.mkdir()
        image = workdir / "root.img"
        run("cp", "--sparse=always", vm_assets["ROOT_IMAGE"], str(image))
        write_fstab(image, workdir, f"{SERVER_GUEST_ADDR}:{EXPORT} {MOUNTPOINT} nfs {options} 0 0")
        sockdir = Path(tempfile.mkdtemp(prefix=f"qwen3vl-vm-{os.getpid()}-"))  # unix socket paths are short
        sock_path = sockdir / "agent.sock"
        relay = f"socat STDIO TCP:{nfs_net.server_ip}:2049,,connect-timeout=5"  # ",," is a "," to qemu
        cmd = [
            "setpriv", "--pdeathsig", "KILL",  # qemu dies with pytest, even on SIGKILL
            "qemu-system-x86_64", "-accel", "tcg", "-m", "1024", "-smp", "2",
            "-nodefaults", "-display", "none", "-no-reboot", "-monitor", "none",
            "-kernel", vm_assets["KERNEL"], "-initrd", vm_assets["INITRD"],
            "-append", "root=/dev/vda rw console=ttyS0 net.ifnames=0 panic=-1",
            "-drive", f"file={image},format=raw,if=virtio,cache=unsafe",
            "-netdev", f"user,id=n0,restrict=on,guestfwd=tcp:{SERVER_GUEST_ADDR}:2049-cmd:{relay}",
            "-device", "virtio-net-pci,netdev=n0",
            "-chardev", f"file,id=con,path={workdir / 'console.log'}", "-serial", "chardev:con",
            "-chardev", f"socket,id=agent,path={sock_path},server=on,wait=on", "-serial", "chardev:agent",
        ]  # fmt: skip
        with open(workdir / "qemu.log", "w") as qlog:
            proc = subprocess.Popen(cmd, stdout=qlog, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        vm = Vm(name=name, workdir=workdir, proc=proc, started=time.monotonic(), sockdir=sockdir)
        vms.append(vm)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        deadline = time.monotonic() + 30
        while True:
            try:
                sock.connect(str(sock_path))
                break
            except OSError:
                qlog_text = (workdir / "qemu.log").read_text(errors="replace")
                assert vm.alive() and time.monotonic() < deadline, f"qemu did not open its agent socket:\n{qlog_text}"
                time.sleep(0.1)
        vm.agent = Agent(sock)
        try:
            vm.ready_guest_s = vm.agent.wait_ready(BOOT_TIMEOUT, vm.alive)
        except (TimeoutError, RuntimeError) as exc:
            pytest.fail(f"{name}: the guest agent did not report ready: {exc}\n{vm.console_tail()}")
        vm.ready_host_s = time.monotonic() - vm.started
        return vm

    yield boot
    for vm in vms:
        vm.stop()


@pytest.fixture(scope="module")
def timings():
    rows = {}
    yield rows
    print("\n[vm] measured timings (host seconds from qemu start; guest seconds since kernel start):")
    for name, row in rows.items():
        print(f"[vm]   {name:<10} " + "  ".join(f"{k}={v}" for k, v in row.items()))


# --- checks shared by the tests -----------------------------------------------------------------


def assert_nfs_mounted(vm, options):
    mounts = vm.mounts_at(MOUNTPOINT)
    nfs = [fs for fs in mounts if fs["fstype"].startswith("nfs")]
    assert len(nfs) == 1, f"expected one NFS mount at {MOUNTPOINT}, findmnt shows {mounts}\n{vm.diag()}"
    fs = nfs[0]
    assert fs["fstype"] == "nfs4", fs
    assert fs["source"] == f"{SERVER_GUEST_ADDR}:{EXPORT}", fs
    missing = expected_kernel_options(options) - set(fs["options"].split(","))
    assert not missing, f"kernel mount options {fs['options']} lack {sorted(missing)} (asked for {options})"
    return fs


def assert_no_nfs_mount(vm):
    mounts = vm.mounts_at(MOUNTPOINT)
    assert not [fs for fs in mounts if fs["fstype"].startswith("nfs")], f"unexpected NFS mount: {mounts}"
    return mounts


def assert_systemd_wiring(vm, options):
    """The userspace options as systemd-fstab-generator turned them into units."""
    mount = vm.show(MOUNT_UNIT, "After", "Wants", "Before", "RequiredBy", "WantedBy", "TimeoutUSec")
    assert "network-online.target" in mount["After"].split(), mount  # a network filesystem (_netdev)
    assert "network-online.target" in mount["Wants"].split(), mount
    assert timespan_seconds(mount["TimeoutUSec"]) == mount_timeout(options), mount
    if has_option(options, "x-systemd.automount"):
        auto = vm.show(AUTOMOUNT_UNIT, "ActiveState", "TimeoutIdleUSec", "RequiredBy", "WantedBy")
        assert auto["ActiveState"] == "active", auto
        idle = option_value(options, "x-systemd.idle-timeout")
        if idle:
            assert timespan_seconds(auto["TimeoutIdleUSec"]) == option_seconds(idle), auto
        assert "remote-fs.target" in (auto["RequiredBy"] + " " + auto["WantedBy"]).split(), auto
    elif has_option(options, "nofail"):
        # only wanted by remote-fs.target and not ordered before it: the boot does not wait for it
        assert "remote-fs.target" in mount["WantedBy"].split(), mount
        assert "remote-fs.target" not in mount["RequiredBy"].split(), mount
        assert "remote-fs.target" not in mount["Before"].split(), mount


def assert_guest_isolated(vm):
    """restrict=on: the guest reaches the forwarded NFS address only, not even the host's loopback
    (10.0.2.2 on qemu's user network) where a listener is waiting."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        rc, out = vm.sh(f"timeout 10 bash -c 'echo hi > /dev/tcp/10.0.2.2/{port}'", timeout=30)
        assert rc != 0, f"the guest reached the host's loopback port {port}: {out}"
        with pytest.raises(TimeoutError):
            listener.accept()


# Large enough to take many NFS WRITE/READ calls (the server offers 1 MiB wsize/rsize) and to cross the
# ~3 KB at which libnfs 4.0's NFSv4 writes fail in molecule/nfs_server: the kernel client has no such limit.
EXCHANGE_BYTES = 4 * 1024 * 1024


def exchange_data(vm, export_dir, *, tag):
    """The guest reads a file the test put on the server side and writes one the test reads there."""
    host_digest = hashlib.sha256((export_dir / f"from-host-{tag}.bin").read_bytes()).hexdigest()
    out = vm.check(f"sha256sum {MOUNTPOINT}/from-host-{tag}.bin", timeout=150)
    assert out.split()[0] == host_digest, "the guest read different bytes than the server holds"
    target = f"{MOUNTPOINT}/from-guest-{tag}.bin"
    out = vm.check(f"head -c {EXCHANGE_BYTES} /dev/urandom > {target} && sync && sha256sum {target}", timeout=150)
    on_server = export_dir / f"from-guest-{tag}.bin"
    assert on_server.exists(), f"{on_server} missing on the server side after the guest wrote it"
    assert on_server.stat().st_size == EXCHANGE_BYTES
    assert hashlib.sha256(on_server.read_bytes()).hexdigest() == out.split()[0], (
        "the server holds different bytes than the guest wrote"
    )


def export_with_file(tmp_path, tag):
    export_dir = tmp_path / "export"
    export_dir.mkdir()
    (export_dir / f"from-host-{tag}.bin").write_bytes(secrets.token_bytes(EXCHANGE_BYTES))
    return export_dir


# --- the tests ---------------------------------------------------------------------------------


def test_boot_with_server_up_mounts_at_boot_and_moves_data(boot_vm, nfs_server, nfs_net, tmp_path, timings):
    export_dir = export_with_file(tmp_path, "up")
    server = nfs_server(export_dir)
    vm = boot_vm(options=OPTIONS, name="server-up")
    state, finished_guest, finished_host = vm.system_state(timeout=300)
    assert state == "running", f"is-system-running: {state}\n{vm.diag()}"
    automount = has_option(OPTIONS, "x-systemd.automount")
    mounted_at = None
    if not automount:
        # mounted by the boot itself (a boot job; nofail lets multi-user.target come first), before the
        # test touched anything
        mounted_at = vm.monotonic_s(MOUNT_UNIT)
        assert 0 < mounted_at <= finished_guest, f"mounted at {mounted_at}s, boot finished at {finished_guest}s"
        assert_nfs_mounted(vm, OPTIONS)
    exchange_data(vm, export_dir, tag="up")
    fs = assert_nfs_mounted(vm, OPTIONS)
    assert_systemd_wiring(vm, OPTIONS)
    peers = server.peers()
    assert peers, "the server shows no established NFS connection"
    assert set(peers) == {nfs_net.gateway}, f"server sees clients {peers}, its export allows only {nfs_net.gateway}"
    assert_guest_isolated(vm)
    multi_user = vm.monotonic_s("multi-user.target")
    timings["server-up"] = dict(
        ready_host_s=round(vm.ready_host_s, 1),
        mounted_guest_s=round(mounted_at, 1) if mounted_at else None,
        finished_host_s=round(finished_host, 1),
        multi_user_guest_s=round(multi_user, 1),
        finished_guest_s=round(finished_guest, 1),
        state=state,
    )
    print(f"\n[vm] server up: {timings['server-up']}; mount {fs['source']} {fs['fstype']} {fs['options']}")


def test_boot_with_server_missing_is_not_blocked(boot_vm, timings):
    # No Ganesha container at all: the relay's target address on the test network has nothing behind it.
    vm = boot_vm(options=OPTIONS, name="server-down")
    limit = mount_timeout(OPTIONS)
    state, finished_guest, finished_host = vm.system_state(timeout=int(MULTI_USER_BUDGET + limit + 120))
    assert state in {"running", "degraded"}, f"is-system-running: {state}\n{vm.diag()}"
    multi_user = vm.monotonic_s("multi-user.target")
    assert 0 < multi_user <= MULTI_USER_BUDGET, f"multi-user.target reached at {multi_user}s"
    mounts = assert_no_nfs_mount(vm)
    props = ("ActiveState", "Result", "InactiveExitTimestampMonotonic", "InactiveEnterTimestampMonotonic")
    mount = vm.show(MOUNT_UNIT, *props)
    row = dict(
        ready_host_s=round(vm.ready_host_s, 1),
        finished_host_s=round(finished_host, 1),
        multi_user_guest_s=round(multi_user, 1),
        finished_guest_s=round(finished_guest, 1),
        state=state,
    )
    if has_option(OPTIONS, "x-systemd.automount"):
        assert state == "running", vm.diag()
        assert [fs["fstype"] for fs in mounts] == ["autofs"], mounts
        assert mount["ActiveState"] == "inactive", mount  # never tried: nobody accessed the path
    else:
        assert mount["ActiveState"] == "failed", f"{mount}\n{vm.diag()}"
        tried_at = int(mount["InactiveExitTimestampMonotonic"]) / 1e6
        gave_up_at = int(mount["InactiveEnterTimestampMonotonic"]) / 1e6
        # the boot reached multi-user.target while the mount was still trying: it did not wait for it
        assert multi_user < gave_up_at, f"multi-user.target at {multi_user}s, mount gave up at {gave_up_at}s"
        # and the mount attempt is bounded by x-systemd.mount-timeout
        assert gave_up_at - tried_at <= limit + SETTLE_SLACK, mount
        assert finished_guest <= max(multi_user, gave_up_at) + SETTLE_SLACK, (finished_guest, mount)
        row.update(mount_result=mount["Result"], mount_tried_s=round(tried_at, 1), mount_gave_up_s=round(gave_up_at, 1))
        _rc, lingering = vm.sh("pgrep -a mount.nfs || true", timeout=30)
        row["mount.nfs_left_running"] = len(lingering.splitlines())
    timings["server-down"] = row
    print(f"\n[vm] server missing: {row}")


def test_automount_boot_without_server_then_mounts_on_access(boot_vm, nfs_server, tmp_path, timings):
    assert has_option(AUTO_OPTIONS, "x-systemd.automount"), f"QWEN3VL_VM_NFS_AUTOMOUNT_OPTIONS lacks it: {AUTO_OPTIONS}"
    export_dir = export_with_file(tmp_path, "auto")
    vm = boot_vm(options=AUTO_OPTIONS, name="automount")
    state, finished_guest, finished_host = vm.system_state(timeout=300)
    assert state == "running", f"is-system-running: {state}\n{vm.diag()}"
    multi_user = vm.monotonic_s("multi-user.target")
    assert 0 < multi_user <= MULTI_USER_BUDGET, f"multi-user.target reached at {multi_user}s"
    mounts = assert_no_nfs_mount(vm)
    assert [fs["fstype"] for fs in mounts] == ["autofs"], f"expected only the automount point: {mounts}"
    assert vm.show(MOUNT_UNIT, "ActiveState")["ActiveState"] == "inactive"
    # now the server comes up; the first access mounts
    nfs_server(export_dir)
    t0 = time.monotonic()
    exchange_data(vm, export_dir, tag="auto")
    first_access_s = time.monotonic() - t0
    fs = assert_nfs_mounted(vm, AUTO_OPTIONS)
    assert_systemd_wiring(vm, AUTO_OPTIONS)
    timings["automount"] = dict(
        ready_host_s=round(vm.ready_host_s, 1),
        finished_host_s=round(finished_host, 1),
        multi_user_guest_s=round(multi_user, 1),
        finished_guest_s=round(finished_guest, 1),
        state=state,
        first_access_and_exchange_s=round(first_access_s, 1),
    )
    print(f"\n[vm] automount: {timings['automount']}; mount {fs['options']}")


def server_grace():
    """(Grace_Period, Lease_Lifetime) as the nfs_server role configures them with its defaults, unless
    QWEN3VL_VM_NFS_GRACE / QWEN3VL_VM_NFS_LEASE give others."""
    defaults = yaml.safe_load((REPO / "roles" / "nfs_server" / "defaults" / "main.yml").read_text())
    grace = int(os.environ.get("QWEN3VL_VM_NFS_GRACE", defaults["nfs_server_grace_period"]))
    lease = int(os.environ.get("QWEN3VL_VM_NFS_LEASE", defaults["nfs_server_lease_time"]))
    return grace, lease


# The guest saves a "session" every 0.1 s as an application does: a new file written and flushed
# (fsync), then renamed over one of 8 session files. Each save is logged, with guest times, on the local disk.
WRITER = """\
#!/bin/sh
dir={dir}
mkdir -p "$dir"
i=0
while [ ! -e /root/stop-writer ]; do
  i=$((i + 1))
  s=$(date +%s.%N)
  if printf 'session save %s\\n' "$i" | dd of="$dir/.save-$i.tmp" conv=fsync status=none \\
     && mv -f "$dir/.save-$i.tmp" "$dir/session-$((i % 8)).json"; then rc=0; else rc=1; fi
  e=$(date +%s.%N)
  echo "$i $s $e $rc" >> /root/saves.log
  sleep 0.1
done
echo done > /root/writer-done
"""
# Linux's NFS client retries a lost TCP connection 3 s after the first failed attempt, then doubles the
# wait (sunrpc's XS_TCP_INIT_REEST_TO); two failed attempts while the server comes back cost 3 + 6 s.
RECONNECT_SLACK = 9.0


def test_server_restart_while_sessions_are_saved(boot_vm, nfs_server, tmp_path, timings):
    """The NFS server restarted (the container's Ganesha stopped and started again, as `systemctl restart
    nfs-ganesha` does) while the guest saves a session every 0.1 s through the nfs_client role's hard mount,
    with the nfs_server role's grace period and lease time. What the WebUI would see: saves that wait (not
    fail), how long, and every save intact afterwards."""
    grace, lease = server_grace()
    export_dir = tmp_path / "export"
    export_dir.mkdir()
    server = nfs_server(export_dir, nfsv4=f"    Grace_Period = {grace};\n    Lease_Lifetime = {lease};")
    vm = boot_vm(options=OPTIONS, name="restart")
    state, _finished_guest, _finished_host = vm.system_state(timeout=300)
    assert state == "running", f"is-system-running: {state}\n{vm.diag()}"
    # a fresh server is in its grace period too: wait until a new file can be created
    vm.check(f"until touch {MOUNTPOINT}/ready 2>/dev/null; do sleep 1; done", timeout=grace + lease + 60)
    vm.check(
        "cat > /root/writer.sh <<'SH'\n" + WRITER.format(dir=MOUNTPOINT + "/sessions") + "SH\n"
        "setsid sh /root/writer.sh </dev/null >/dev/null 2>&1 &"
    )
    time.sleep(5)  # steady saves before the fault
    before = float(vm.check("date +%s.%N"))
    t0 = time.monotonic()
    run("docker", "restart", "--time", "10", server.container)
    restart_s = time.monotonic() - t0
    after = float(vm.check("date +%s.%N"))
    limit = restart_s + grace + RECONNECT_SLACK + 5  # + 5 s: the agent's round trips and TCG's slowness
    deadline = time.monotonic() + limit + 60
    saves = []
    while time.monotonic() < deadline:
        time.sleep(2)
        saves = [line.split() for line in vm.check("cat /root/saves.log").splitlines() if line.strip()]
        later = [row for row in saves if float(row[1]) > after and row[3] == "0"]
        if len(later) >= 10:
            break
    vm.check("touch /root/stop-writer; until [ -e /root/writer-done ]; do sleep 0.2; done", timeout=limit + 60)
    saves = [line.split() for line in vm.check("cat /root/saves.log").splitlines() if line.strip()]
    rows = [(int(i), float(s), float(e), int(rc)) for i, s, e, rc in saves]
    failed = [row for row in rows if row[3] != 0]
    in_flight = [row for row in rows if row[1] < before < row[2] or row[1] < after < row[2]]
    first_after = min((row[2] for row in rows if row[1] >= after and row[3] == 0), default=None)
    longest_save = max(row[2] - row[1] for row in rows)
    ends = sorted(row[2] for row in rows if row[3] == 0)
    longest_gap = max(b - a for a, b in zip(ends, ends[1:], strict=False))
    row = dict(
        grace_s=grace,
        lease_s=lease,
        restart_s=round(restart_s, 2),
        saves=len(rows),
        failed=len(failed),
        in_flight_at_fault=len(in_flight),
        first_save_started_after_fault_done_s=None if first_after is None else round(first_after - before, 2),
        longest_save_s=round(longest_save, 2),
        longest_gap_without_a_save_s=round(longest_gap, 2),
        bound_s=round(limit, 2),
    )
    timings["restart"] = row
    print(f"\n[vm] server restarted while saving: {row}")
    # a hard mount: saves wait for the server, none fails
    assert not failed, f"saves failed: {failed[:5]}\n{vm.diag()}"
    assert first_after is not None, f"no save completed after the restart: {row}\n{vm.diag()}"
    assert first_after - before <= limit, row
    assert longest_gap <= limit, row
    # every session file holds what the guest last wrote to it, on the server's disk
    last = {}
    for i, _s, _e, _rc in rows:
        last[i % 8] = i
    for slot, i in last.items():
        text = (export_dir / "sessions" / f"session-{slot}.json").read_text()
        assert text == f"session save {i}\n", (slot, text)
    assert not list((export_dir / "sessions").glob(".save-*.tmp")), "a save left its temporary file"
