# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The boot gate of a GPU host's model instances: the core of ``qwen3vl-instance-gate``.

The problem: after a reboot, dockerd's restart policy starts every container it had running, at once and
before anything has looked at the host. A vLLM whose NFS model share did not come back, or whose weights
were damaged, would start anyway; a WebUI whose data share is missing writes its sessions onto the local
disk, hidden later under the mount.

How the gate stops that without giving up the restart policy (which still restarts a container that
crashes while the host runs): the containers do not name their host directories directly. Each bind mount
names a symbolic link in the gate directory, ``<gate_dir>/<instance>.model`` and ``<instance>.data``, and the gate
directory lives on /run, a tmpfs that every boot empties. Docker refuses to start a container whose bind
source does not exist (``bind source path does not exist``), so after a boot nothing starts. Then this
gate, a systemd service ordered after Docker and the remote file systems, checks each instance:

- the GPU watch (gpu_watch.py, where the role runs it) does not hold it back for its GPU;
- every mount it depends on is mounted (a configured mount point at or above its model or data directory,
  read from /proc/self/mountinfo; a bare autofs trigger does not count);
- its weights verify against their manifest (model_checksum's ``verify_tree``, the module's own code and
  cache).

An instance that passes gets its links (made atomically) and its containers started, vLLM first. One that
fails is logged with the reason, and checked again every ``interval`` seconds: an instance starts as soon
as its mount returns. The state (one verdict and reason per instance) is written as JSON and, when a
textfile directory is set, as node_exporter metrics. The service ends when every instance is open.

The role (webui) uses the same mount check (``missing_mounts``) before it starts an instance, and makes the
links itself for the instances it starts.

Pure Python, standard library, no Ansible. The role copies this file and model_checksum.py under
/usr/local/lib/qwen3vl-instance-gate/ansible_collections/qwen3vl/ha/plugins/module_utils/ (namespace packages:
the import below works there as in the collection) and a launcher beside; the unit tests call the functions and drive :class:`Gate` with fakes.
"""

import json
import os
import re
import subprocess
import sys
import threading
import time

from ansible_collections.qwen3vl.ha.plugins.module_utils import model_checksum

DEFAULTS = {
    "gate_dir": "/run/qwen3vl-gate",
    "state_file": "/run/qwen3vl-gate/state.json",
    "textfile": "",
    "interval": 5.0,
    "mount_timeout": 10.0,
    "mounts": [],
    "checksum": {},
    "docker": "docker",
}
CHECKSUM_KEYS = {
    "extra_files": ("warn", "ignore", "fail"),
    "exclude": list,
    "workers": int,
    "cache": bool,
    "cache_dir": str,
    "cache_max_age": int,
}
CHECKSUM_DEFAULTS = {
    "extra_files": "warn",
    "exclude": [".cache/*", ".git/*"],
    "workers": 0,
    "cache": True,
    "cache_dir": "/var/cache/qwen3vl-ha/model_checksum",
    "cache_max_age": 0,
}
ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
CONTAINER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class ConfigError(ValueError):
    """The configuration cannot be used; the message lists every problem."""


def absolute(value, what, errors, allow_empty=False):
    if allow_empty and value == "":
        return value
    if not isinstance(value, str) or not value.startswith("/") or "\n" in value:
        errors.append("%s: %r is not an absolute path" % (what, value))
        return None
    return os.path.normpath(value)


def _checksum_options(raw, errors):
    if not isinstance(raw, dict):
        errors.append("checksum: %r is not a mapping" % (raw,))
        return dict(CHECKSUM_DEFAULTS)
    options = dict(CHECKSUM_DEFAULTS)
    for key, value in raw.items():
        kind = CHECKSUM_KEYS.get(key)
        if kind is None:
            errors.append("checksum: unknown option %r (known: %s)" % (key, ", ".join(sorted(CHECKSUM_KEYS))))
        elif isinstance(kind, tuple):
            if value not in kind:
                errors.append("checksum.%s: %r is not one of %s" % (key, value, ", ".join(kind)))
            else:
                options[key] = value
        elif kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            errors.append("checksum.%s: %r is not a whole number >= 0" % (key, value))
        elif kind is list and not (isinstance(value, list) and all(isinstance(item, str) for item in value)):
            errors.append("checksum.%s: %r is not a list of strings" % (key, value))
        elif kind is not int and kind is not list and not isinstance(value, kind):
            errors.append("checksum.%s: %r is not a %s" % (key, value, kind.__name__))
        else:
            options[key] = value
    return options


def _instance(raw, index, errors):
    where = "instances[%d]" % index
    if not isinstance(raw, dict):
        errors.append("%s: %r is not a mapping" % (where, raw))
        return None
    unknown = sorted(set(raw) - {"id", "model_dir", "manifest", "verify", "data_dir", "containers"})
    if unknown:
        errors.append("%s: unknown keys %s" % (where, ", ".join(unknown)))
    ident = str(raw.get("id", ""))
    if not ID_RE.match(ident):
        errors.append("%s.id: %r is not a name of letters, digits, '_', '.', '-'" % (where, raw.get("id")))
    containers = raw.get("containers", [])
    if not isinstance(containers, list) or not all(
        isinstance(name, str) and CONTAINER_RE.match(name) for name in containers
    ):
        errors.append("%s.containers: %r is not a list of container names" % (where, containers))
        containers = []
    verify = raw.get("verify", True)
    if not isinstance(verify, bool):
        errors.append("%s.verify: %r is not true or false" % (where, verify))
    return {
        "id": ident,
        "model_dir": absolute(raw.get("model_dir"), where + ".model_dir", errors),
        "manifest": absolute(raw.get("manifest", ""), where + ".manifest", errors, allow_empty=True),
        "verify": verify is True,
        "data_dir": absolute(raw.get("data_dir", ""), where + ".data_dir", errors, allow_empty=True),
        "containers": containers,
    }


def load_config(raw):
    """Validate a configuration (a dict, as read from the JSON file) and fill in the defaults.

    Raises ConfigError listing every problem.
    """
    if not isinstance(raw, dict):
        raise ConfigError("the configuration is not a JSON object")
    errors = []
    unknown = sorted(set(raw) - set(DEFAULTS) - {"instances"})
    if unknown:
        errors.append("unknown keys: %s" % ", ".join(unknown))
    config = {}
    for key in ("gate_dir", "state_file"):
        config[key] = absolute(raw.get(key, DEFAULTS[key]), key, errors)
    config["textfile"] = absolute(raw.get("textfile", ""), "textfile", errors, allow_empty=True)
    for key, low, high in (("interval", 0.1, 3600), ("mount_timeout", 0.1, 600)):
        value = raw.get(key, DEFAULTS[key])
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            errors.append("%s: %r is not a number from %s to %s" % (key, value, low, high))
        config[key] = value
    mounts = raw.get("mounts", [])
    if not isinstance(mounts, list):
        errors.append("mounts: %r is not a list" % (mounts,))
        mounts = []
    config["mounts"] = [absolute(path, "mounts[%d]" % index, errors) for index, path in enumerate(mounts)]
    config["checksum"] = _checksum_options(raw.get("checksum", {}), errors)
    docker = raw.get("docker", DEFAULTS["docker"])
    if not isinstance(docker, str) or not docker:
        errors.append("docker: %r is not a command name or path" % (docker,))
    config["docker"] = docker
    config["instances"] = instances_of(raw, _instance, errors)
    if errors:
        raise ConfigError("; ".join(errors))
    return config


def instances_of(raw, parse, errors):
    """A configuration's instances, each read by ``parse(item, index, errors)``; an id used twice is an error
    (the GPU watch's configuration is read the same way)."""
    instances = raw.get("instances")
    if not isinstance(instances, list):
        errors.append("instances: %r is not a list" % (instances,))
        instances = []
    parsed = [parse(item, index, errors) for index, item in enumerate(instances)]
    ids = [item["id"] for item in parsed if item]
    duplicates = sorted({ident for ident in ids if ids.count(ident) > 1})
    if duplicates:
        errors.append("instances: ids used twice: %s" % ", ".join(duplicates))
    return parsed


# --------------------------------------------------------------------------------------------
# Mounts


def _unescape_mount(text):
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes (\\040)."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), text)


def parse_mountinfo(text):
    """[(mount point, file system type)] in the order of /proc/self/mountinfo (later mounts last)."""
    table = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8 or "-" not in fields[6:]:
            continue
        dash = fields.index("-", 6)
        if dash + 1 >= len(fields):
            continue
        table.append((_unescape_mount(fields[4]), fields[dash + 1]))
    return table


def _under(path, mount_point):
    return mount_point in (path, "/") or path.startswith(mount_point.rstrip("/") + "/")


def mounts_for(paths, mounts):
    """The configured mount points at or above any of paths (in the order configured)."""
    paths = [os.path.normpath(path) for path in paths if path]
    return [mount for mount in mounts if any(_under(path, os.path.normpath(mount)) for path in paths)]


def missing_mounts(paths, mounts, table):
    """The configured mount points that paths depend on and that are not mounted now.

    ``table`` is parse_mountinfo()'s result. A mount point counts as mounted when the last mount on it is
    not ``autofs`` (an automount point whose file system has not been mounted yet is only its trigger).
    """
    top = {}
    for mount_point, fstype in table:
        top[os.path.normpath(mount_point)] = fstype
    return [mount for mount in mounts_for(paths, mounts) if top.get(os.path.normpath(mount), "autofs") == "autofs"]


def read_mountinfo(path="/proc/self/mountinfo"):
    with open(path, encoding="utf-8", errors="surrogateescape") as handle:
        return handle.read()


def stat_within(path, timeout):
    """os.stat(path) in a thread, given up after timeout seconds (a hard NFS mount whose server is gone
    blocks for as long as it is gone). Returns None, or the reason it failed."""
    outcome = {}

    def work():
        try:
            os.stat(path)
            outcome["error"] = None
        except OSError as exc:
            outcome["error"] = "%s: %s" % (path, exc.strerror or exc)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return "%s did not answer within %ss" % (path, timeout)
    return outcome["error"]


# --------------------------------------------------------------------------------------------
# One instance


def link_paths(gate_dir, ident):
    """The paths of an instance's two links, to its model directory and to its data directory."""
    base = os.path.join(gate_dir, ident)
    return base + ".model", base + ".data"


def links_of(gate_dir, instance):
    """{link path: target} for an instance: its model directory and, when it has one, its data directory."""
    model, data = link_paths(gate_dir, instance["id"])
    links = {model: instance["model_dir"]}
    if instance.get("data_dir"):
        links[data] = instance["data_dir"]
    return links


FENCE_SUFFIX = ".gpu-fenced"


def fence_marker(gate_dir, ident):
    """The file by which the GPU watch (gpu_watch.py) holds an instance back for its GPU; it holds the reason."""
    return os.path.join(gate_dir, ident + FENCE_SUFFIX)


def read_fence(gate_dir, ident):
    """The GPU watch's reason for holding the instance back, or None when it does not."""
    try:
        with open(fence_marker(gate_dir, ident), encoding="utf-8", errors="replace") as handle:
            return handle.read().strip() or "fenced by the GPU watch"
    except FileNotFoundError:
        return None
    except OSError as exc:
        return "cannot read the GPU watch's marker: %s" % exc


def check_instance(instance, config, table, *, stat=stat_within, verify_tree=model_checksum.verify_tree):
    """(reason, detail) for one instance: ("ok", "") when it may start, else why not.

    Order: the GPU watch's fence (its GPU is bad: nothing else matters), mounts (a missing mount makes every
    other check meaningless), then the directories answer (a hung NFS server), then the weights.
    """
    fenced = read_fence(config["gate_dir"], instance["id"])
    if fenced is not None:
        return "gpu_fenced", fenced
    paths = [path for path in (instance["model_dir"], instance.get("data_dir", "")) if path]
    missing = missing_mounts(paths, config["mounts"], table)
    if missing:
        return "mount_missing", "not mounted: %s" % ", ".join(missing)
    for path in paths:
        problem = stat(path, config["mount_timeout"])
        if problem:
            return ("mount_not_responding" if "did not answer" in problem else "dir_missing"), problem
    if not instance["verify"]:
        return "ok", ""
    return check_weights(instance, config["checksum"], verify_tree)


def check_weights(instance, options, verify_tree=model_checksum.verify_tree):
    """(reason, detail) of the instance's weights against their manifest, through model_checksum's cache."""
    manifest = instance["manifest"] or os.path.join(instance["model_dir"], "SHA256SUMS")
    cache_file = (
        model_checksum.cache_file_for(options["cache_dir"], instance["model_dir"]) if options["cache"] else None
    )
    tree = verify_tree(
        instance["model_dir"],
        manifest,
        extra_files=options["extra_files"],
        exclude=options["exclude"],
        cache_file=cache_file,
        workers=options["workers"],
        max_age=options["cache_max_age"],
    )
    if tree["error"]:
        return "weights_unverifiable", tree["error"]
    checked = tree["checked"]
    if checked["bad"]:
        problems = tree["problems"]
        return "weights_bad", "%d of %d files failed verification: %s" % (
            len(checked["bad"]),
            checked["summary"]["files"],
            "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else ""),
        )
    return "ok", ""


def make_link(path, target):
    """Point path at target (atomically: a new link renamed over the old one). True when it changed."""
    try:
        if os.readlink(path) == target:
            return False
    except OSError:
        pass
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    tmp = os.path.join(directory, ".%s.%d.tmp" % (os.path.basename(path), os.getpid()))
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    os.symlink(target, tmp)
    os.replace(tmp, path)
    return True


def docker_each(docker, args, names, timeout, run=subprocess.run):
    """``docker ARGS NAME`` for each container in order; one not created yet is skipped (the role creates it).
    Returns the problems."""
    problems = []
    for name in names:
        try:
            proc = run([docker] + list(args) + [name], capture_output=True, text=True, timeout=timeout, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            problems.append("%s: %s" % (name, exc))
            continue
        text = (proc.stderr or proc.stdout or "").strip()
        if proc.returncode != 0 and "No such container" not in text:
            problems.append("%s: %s" % (name, text.splitlines()[-1] if text else "docker %s failed" % args[0]))
    return problems


def start_containers(docker, names, run=subprocess.run):
    """``docker start`` each container in order (a running one is left as it is, one not created yet is
    skipped). Returns the problems."""
    return docker_each(docker, ["start"], names, 120, run)


# --------------------------------------------------------------------------------------------
# State and metrics


def label(value):
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def metrics(verdicts, now):
    """node_exporter textfile: one gauge per instance (1 = may serve), with the reason as a label: ok, unchecked,
    gpu_fenced, mount_missing, mount_not_responding, dir_missing, weights_bad, weights_unverifiable, link_failed or
    start_failed."""
    lines = [
        "# HELP qwen3vl_instance_gate_open Whether the boot gate let the instance's containers start (1) or"
        " holds them back (0), and why.",
        "# TYPE qwen3vl_instance_gate_open gauge",
    ]
    for ident in sorted(verdicts):
        reason = verdicts[ident]["reason"]
        lines.append(
            'qwen3vl_instance_gate_open{instance="%s",reason="%s"} %d' % (label(ident), label(reason), reason == "ok")
        )
    lines += [
        "# HELP qwen3vl_instance_gate_last_check_timestamp_seconds When the gate last checked.",
        "# TYPE qwen3vl_instance_gate_last_check_timestamp_seconds gauge",
        "qwen3vl_instance_gate_last_check_timestamp_seconds %.3f" % now,
    ]
    return "\n".join(lines) + "\n"


def write_atomic(path, text, mode=0o644):
    """model_checksum's atomic write (a temporary file and a rename), in a directory made when missing."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    model_checksum.write_atomic(path, text, mode)


# --------------------------------------------------------------------------------------------
# The service


class Gate:
    """Checks the instances that are not open yet, opens those that pass, until all are open.

    Everything that touches the host is an attribute the tests replace: mountinfo, stat, verify_tree,
    run (subprocess.run for docker), log, clock and sleep.
    """

    def __init__(self, config, *, start=True, log=None, clock=time.time, sleep=time.sleep):
        self.config = config
        self.start = start
        self.log = log or say
        self.clock = clock
        self.sleep = sleep
        self.mountinfo = read_mountinfo
        self.stat = stat_within
        self.verify_tree = model_checksum.verify_tree
        self.run = subprocess.run
        self.verdicts = {
            item["id"]: {"reason": "unchecked", "detail": "", "since": None} for item in config["instances"]
        }

    def check_round(self):
        """One pass over the instances that are still closed. Returns the number still closed."""
        now = self.clock()
        try:
            table = parse_mountinfo(self.mountinfo())
        except OSError as exc:
            table = []
            self.log("cannot read the mount table: %s" % exc)
        closed = 0
        for instance in self.config["instances"]:
            verdict = self.verdicts[instance["id"]]
            if verdict["reason"] == "ok":
                continue
            reason, detail = check_instance(instance, self.config, table, stat=self.stat, verify_tree=self.verify_tree)
            if reason == "ok":
                reason, detail = self._open(instance)
            if (reason, detail) != (verdict["reason"], verdict["detail"]):
                verdict.update(reason=reason, detail=detail, since=now)
                self.log(
                    "instance %s: %s"
                    % (
                        instance["id"],
                        "open, containers started" if reason == "ok" else "held back (%s): %s" % (reason, detail),
                    )
                )
            closed += reason != "ok"
        self.write_state(now)
        return closed

    def _open(self, instance):
        try:
            for path, target in links_of(self.config["gate_dir"], instance).items():
                make_link(path, target)
        except OSError as exc:
            return "link_failed", "cannot link in %s: %s" % (self.config["gate_dir"], exc)
        if self.start and instance["containers"]:
            problems = start_containers(self.config["docker"], instance["containers"], run=self.run)
            if problems:
                # The links stay: the role creates a missing container; a start that failed is retried.
                return "start_failed", "; ".join(problems)
        return "ok", ""

    def write_state(self, now):
        document = {"checked_at": now, "instances": self.verdicts}
        try:
            write_atomic(self.config["state_file"], json.dumps(document, indent=1, sort_keys=True) + "\n")
            if self.config["textfile"]:
                write_atomic(
                    os.path.join(self.config["textfile"], "qwen3vl_instance_gate.prom"), metrics(self.verdicts, now)
                )
        except OSError as exc:
            self.log("cannot write the state: %s" % exc)

    def run_until_open(self, once=False):
        """Check every interval until every instance is open (or once). Returns the number still closed."""
        while True:
            closed = self.check_round()
            if closed == 0 or once:
                return closed
            self.sleep(self.config["interval"])


def say(text, stream=None):
    (stream or sys.stdout).write(text + "\n")
    (stream or sys.stdout).flush()


def read_config(path, load):
    """A JSON configuration file through ``load`` (this module's or the GPU watch's load_config). Raises
    OSError, or ValueError (ConfigError and bad JSON are ValueErrors)."""
    with open(path, encoding="utf-8") as handle:
        return load(json.load(handle))


USAGE = "usage: qwen3vl-instance-gate CONFIG.json [--check-config | --once] [--no-start]"


def main(argv=None):
    """Exit status: 0 every instance open (or the configuration is valid, with --check-config), 1 some
    instance held back (--once), 2 usage or configuration error."""
    argv = list(sys.argv[1:] if argv is None else argv)
    flags = {arg for arg in argv if arg.startswith("--")}
    paths = [arg for arg in argv if not arg.startswith("--")]
    if len(paths) != 1 or flags - {"--check-config", "--once", "--no-start"}:
        say(USAGE, sys.stderr)
        return 2
    try:
        config = read_config(paths[0], load_config)
    except (OSError, ValueError) as exc:
        say("qwen3vl-instance-gate: %s: %s" % (paths[0], exc), sys.stderr)
        return 2
    if "--check-config" in flags:
        return 0
    gate = Gate(config, start="--no-start" not in flags)
    closed = gate.run_until_open(once="--once" in flags)
    return 1 if closed else 0
