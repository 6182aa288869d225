# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The GPU watch of a GPU host's model instances: the core of ``qwen3vl-gpu-watch``.

The deploy-time GPU check (the role's gpu_health task) looks at a GPU once, before its instance starts. A
GPU that goes bad later (a fatal XID such as 79 "fallen off the bus" or 48 "double-bit ECC", uncorrectable
ECC errors, pages or rows pending retirement, a driver that no longer answers) leaves a vLLM that hangs or
answers errors while nginx keeps sending it users. This service reads the GPUs every ``interval`` seconds
with gpu_health's own code (the same readers, rules and thresholds as the module) and acts on each
instance's GPU:

- **fence**: after ``fall`` passes in a row in which its GPU is unhealthy (or missing, or unreadable), the
  instance is held back: a marker ``<gate_dir>/<id>.gpu-fenced`` tells the boot gate not to start it, its
  links in the gate directory are removed (so neither Docker's restart policy nor a ``docker start`` can
  bring it back), and its containers are stopped. The load balancers' checker then finds it down and takes it
  out of rotation; requests it was serving are lost with it, as they would be with a broken GPU anyway.
- **release**: after ``rise`` passes in a row in which its GPU is healthy again (say, after a GPU reset),
  the marker goes and the boot gate is restarted, which checks the instance's mounts and weights as at a
  boot and starts it. A converge of the role whose own GPU check passes removes the marker itself and starts
  the instance; the watch takes that as the release (and fences again after ``fall`` bad readings).

Warnings (heat, clocks, a narrow PCIe link) never fence. ``min_free_memory_mib`` and ``expected_count`` are
deploy-time rules and are not applied here: a serving vLLM holds most of its GPU's memory. An instance is
matched to its GPU by UUID when the role knows it (indices can shift when a GPU drops off the bus), else
by index.

Besides the kernel log (``health.xid_source``), the lines in ``drill_file`` are read as kernel log lines:
the failover drill's way to report a GPU fault on a host whose GPUs are fine. /run is emptied at boot.

A changed configuration file is taken up before the next pass, without a restart: the role writes it
before it starts instances, so the watch never judges an instance by settings older than the converge's.

Each pass writes its state as JSON and, when a textfile directory is set, node_exporter metrics: the GPU
readings (gpu_health's ``qwen3vl_gpu_*``) and ``qwen3vl_gpu_watch_fenced`` per instance. A change is
logged once. The first pass runs before the service reports ready (sd_notify) and fences an instance that
has not been started yet on one bad reading, so the boot gate, ordered after it, never starts an instance
whose GPU is already known bad.

Pure Python, standard library; the host is reached through attributes of :class:`Watch` that the unit tests
replace (read_gpus, read_kernel_log, run, clock, sleep).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

from ansible_collections.qwen3vl.ha.plugins.module_utils import instance_gate
from ansible_collections.qwen3vl.ha.plugins.module_utils.gpu_health import (
    DEFAULT_MAX_RETIRED_PAGES,
    DEFAULT_XID_FATAL,
    DEFAULT_XID_IGNORE,
    UNHEALTHY,
    GpuHealthError,
    evaluate,
    parse_xid,
    render_prometheus,
    validate_thresholds,
)
from ansible_collections.qwen3vl.ha.plugins.module_utils.gpu_health import read as gpu_read

try:  # NVML's Python binding (nvidia-ml-py), where installed; nvidia-smi is read otherwise
    import pynvml
except ImportError:
    pynvml = None

DEFAULTS = {
    "gate_dir": "/run/qwen3vl-gate",
    "state_file": "/run/qwen3vl-gate/gpu-watch.json",
    "drill_file": "/run/qwen3vl-gate/drill-xid.log",
    "textfile": "",
    "interval": 5.0,
    "fall": 2,
    "rise": 3,
    "stop_timeout": 10,
    "gate_unit": "qwen3vl-instance-gate.service",
    "docker": "docker",
    "systemctl": "systemctl",
}
HEALTH_DEFAULTS = {
    "backend": "auto",
    "nvidia_smi_path": "nvidia-smi",
    "xid_source": "auto",
    "kernel_log_path": "",
    "max_temperature": None,
    "min_driver_version": None,
    "max_retired_pages": DEFAULT_MAX_RETIRED_PAGES,
    "xid_ignore": list(DEFAULT_XID_IGNORE),
    "xid_fatal": list(DEFAULT_XID_FATAL),
}


# The configuration cannot be used; the message lists every problem (the boot gate's error, shared).
ConfigError = instance_gate.ConfigError


def _whole(value, what, errors, low, high):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        errors.append("%s: %r is not a whole number from %d to %d" % (what, value, low, high))


def _health(raw, errors):
    if not isinstance(raw, dict):
        errors.append("health: %r is not a mapping" % (raw,))
        return dict(HEALTH_DEFAULTS)
    unknown = sorted(set(raw) - set(HEALTH_DEFAULTS))
    if unknown:
        errors.append("health: unknown keys %s (known: %s)" % (", ".join(unknown), ", ".join(sorted(HEALTH_DEFAULTS))))
    health = dict(HEALTH_DEFAULTS)
    health.update({key: value for key, value in raw.items() if key in HEALTH_DEFAULTS and value is not None})
    if health["backend"] not in gpu_read.BACKENDS:
        errors.append("health.backend: %r is not one of %s" % (health["backend"], ", ".join(gpu_read.BACKENDS)))
    if health["xid_source"] not in gpu_read.XID_SOURCES:
        errors.append(
            "health.xid_source: %r is not one of %s" % (health["xid_source"], ", ".join(gpu_read.XID_SOURCES))
        )
    for key in ("nvidia_smi_path", "kernel_log_path"):
        if not isinstance(health[key], str):
            errors.append("health.%s: %r is not a string" % (key, health[key]))
    if health["xid_source"] == "file" and not health["kernel_log_path"]:
        errors.append("health: xid_source file needs kernel_log_path")
    typed = True
    for key in ("max_temperature", "max_retired_pages"):
        if health[key] is not None and (isinstance(health[key], bool) or not isinstance(health[key], int)):
            errors.append("health.%s: %r is not a whole number" % (key, health[key]))
            typed = False
    for key in ("xid_ignore", "xid_fatal"):
        if not isinstance(health[key], list) or not all(
            isinstance(x, int) and not isinstance(x, bool) for x in health[key]
        ):
            errors.append("health.%s: %r is not a list of XID numbers" % (key, health[key]))
            typed = False
    if health["min_driver_version"] is not None and not isinstance(health["min_driver_version"], str):
        errors.append("health.min_driver_version: %r is not a version string" % (health["min_driver_version"],))
        typed = False
    if typed:
        errors.extend("health." + problem for problem in validate_thresholds(thresholds_of(health)))
    return health


def thresholds_of(health):
    """gpu_health's thresholds from the watch's health settings (no free-memory rule: vLLM holds the memory)."""
    return {
        "max_temperature": health["max_temperature"],
        "min_free_memory_mib": None,
        "min_driver_version": health["min_driver_version"],
        "max_retired_pages": health["max_retired_pages"],
        "xid_ignore": health["xid_ignore"],
        "xid_fatal": health["xid_fatal"],
    }


def _instance(raw, index, errors):
    where = "instances[%d]" % index
    if not isinstance(raw, dict):
        errors.append("%s: %r is not a mapping" % (where, raw))
        return None
    unknown = sorted(set(raw) - {"id", "gpu_index", "gpu_uuid", "containers"})
    if unknown:
        errors.append("%s: unknown keys %s" % (where, ", ".join(unknown)))
    ident = str(raw.get("id", ""))
    if not instance_gate.ID_RE.match(ident):
        errors.append("%s.id: %r is not a name of letters, digits, '_', '.', '-'" % (where, raw.get("id")))
    gpu_index = raw.get("gpu_index")
    gpu_uuid = raw.get("gpu_uuid") or ""
    if gpu_index is not None:
        _whole(gpu_index, where + ".gpu_index", errors, 0, 1023)
    if not isinstance(gpu_uuid, str):
        errors.append("%s.gpu_uuid: %r is not a string" % (where, gpu_uuid))
    if gpu_index is None and not gpu_uuid:
        errors.append("%s: names no GPU (gpu_index or gpu_uuid)" % where)
    containers = raw.get("containers", [])
    if not isinstance(containers, list) or not all(
        isinstance(name, str) and instance_gate.CONTAINER_RE.match(name) for name in containers
    ):
        errors.append("%s.containers: %r is not a list of container names" % (where, containers))
        containers = []
    return {"id": ident, "gpu_index": gpu_index, "gpu_uuid": gpu_uuid, "containers": containers}


def load_config(raw):
    """Validate a configuration (a dict, as read from the JSON file) and fill in the defaults.

    Raises ConfigError listing every problem.
    """
    if not isinstance(raw, dict):
        raise ConfigError("the configuration is not a JSON object")
    errors = []
    unknown = sorted(set(raw) - set(DEFAULTS) - {"instances", "health"})
    if unknown:
        errors.append("unknown keys: %s" % ", ".join(unknown))
    config = {}
    for key in ("gate_dir", "state_file", "drill_file"):
        config[key] = instance_gate.absolute(raw.get(key, DEFAULTS[key]), key, errors)
    config["textfile"] = instance_gate.absolute(raw.get("textfile", ""), "textfile", errors, allow_empty=True)
    interval = raw.get("interval", DEFAULTS["interval"])
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0.1 <= interval <= 3600:
        errors.append("interval: %r is not a number from 0.1 to 3600" % (interval,))
    config["interval"] = interval
    for key, low, high in (("fall", 1, 100), ("rise", 1, 100), ("stop_timeout", 0, 3600)):
        config[key] = raw.get(key, DEFAULTS[key])
        _whole(config[key], key, errors, low, high)
    for key in ("gate_unit", "docker", "systemctl"):
        value = raw.get(key, DEFAULTS[key])
        if not isinstance(value, str) or not value or "\n" in value:
            errors.append("%s: %r is not a name or path" % (key, value))
        config[key] = value
    config["health"] = _health(raw.get("health", {}), errors)
    config["instances"] = instance_gate.instances_of(raw, _instance, errors)
    if errors:
        raise ConfigError("; ".join(errors))
    return config


# --------------------------------------------------------------------------------------------
# Judging


def find_gpu(instance, gpus):
    """The GPU of an instance among the judged GPUs: by UUID when known, else by index; None when absent."""
    for gpu in gpus:
        if instance["gpu_uuid"] and gpu.get("uuid") == instance["gpu_uuid"]:
            return gpu
    if instance["gpu_uuid"]:
        return None  # a UUID that is not listed: that GPU is gone, whatever now has its index
    for gpu in gpus:
        if gpu.get("index") == instance["gpu_index"]:
            return gpu
    return None


def judge(instances, verdict=None, problem=None):
    """{instance id: (ok, reason, detail)} for one pass.

    ``verdict`` is gpu_health's evaluate() result, or None when the GPUs could not be read (``problem`` says
    why): then every instance is judged unreadable. Reasons: ok, gpu_unhealthy, gpu_missing, gpu_unreadable.
    """
    judged = {}
    for instance in instances:
        name = instance["gpu_uuid"] or "index %s" % instance["gpu_index"]
        if verdict is None:
            judged[instance["id"]] = (False, "gpu_unreadable", problem or "the GPUs could not be read")
            continue
        gpu = find_gpu(instance, verdict["gpus"])
        if gpu is None:
            judged[instance["id"]] = (False, "gpu_missing", "GPU %s is not listed by the driver" % name)
        elif gpu["status"] == UNHEALTHY:
            judged[instance["id"]] = (False, "gpu_unhealthy", "GPU %s: %s" % (gpu["index"], "; ".join(gpu["reasons"])))
        else:
            judged[instance["id"]] = (True, "ok", "")
    return judged


class Track:
    """One instance's run of good or bad passes, and whether it is fenced."""

    def __init__(self):
        self.fenced = False
        self.bad = 0
        self.good = 0
        self.reason = "ok"
        self.detail = ""
        self.since = None

    def step(self, ok, fall, rise):
        """Count one pass; returns "fence", "release" or None."""
        if ok:
            self.good, self.bad = self.good + 1, 0
            if self.fenced and self.good >= rise:
                return "release"
            return None
        self.bad, self.good = self.bad + 1, 0
        if not self.fenced and self.bad >= fall:
            return "fence"
        return None


# --------------------------------------------------------------------------------------------
# Acting on the host


def has_links(gate_dir, ident):
    """Whether any of the boot gate's links of the instance exists (it was started, or may be)."""
    return any(os.path.lexists(path) for path in instance_gate.link_paths(gate_dir, ident))


def stop_containers(docker, names, timeout, run=subprocess.run):
    """``docker stop`` each container, last first (the WebUI before its vLLM). Returns the problems."""
    return instance_gate.docker_each(docker, ["stop", "--time", str(timeout)], list(reversed(names)), timeout + 60, run)


def sd_notify(text, environ=None):
    """Send text to systemd's notify socket when there is one (Type=notify); True when sent."""
    address = (environ if environ is not None else os.environ).get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(text.encode("utf-8"))
    return True


# nvidia-smi can hang when a GPU drops off the bus; a reading that takes this long counts as unreadable
# (and with ``fall`` such readings in a row, the instances are fenced).
READ_TIMEOUT = 30


def _run_text(argv):
    """(rc, stdout, stderr) of a program, as gpu_health's readers expect."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=READ_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return 127, "", str(exc)
    return proc.returncode, proc.stdout, proc.stderr


def metrics(instances, tracks, now):
    """node_exporter textfile: qwen3vl_gpu_watch_fenced per instance (1 = held back for its GPU)."""
    lines = [
        "# HELP qwen3vl_gpu_watch_fenced Whether the GPU watch holds the instance back for its GPU (1), and why.",
        "# TYPE qwen3vl_gpu_watch_fenced gauge",
    ]
    for instance in instances:
        track = tracks[instance["id"]]
        lines.append(
            'qwen3vl_gpu_watch_fenced{instance="%s",gpu="%s",reason="%s"} %d'
            % (
                instance_gate.label(instance["id"]),
                instance_gate.label(instance["gpu_uuid"] or instance["gpu_index"]),
                instance_gate.label(track.reason),
                track.fenced,
            )
        )
    lines += [
        "# HELP qwen3vl_gpu_watch_last_check_timestamp_seconds When the GPU watch last read the GPUs.",
        "# TYPE qwen3vl_gpu_watch_last_check_timestamp_seconds gauge",
        "qwen3vl_gpu_watch_last_check_timestamp_seconds %.3f" % now,
    ]
    return "\n".join(lines) + "\n"


def nvml_for(config):
    """The pynvml module where the backend may use NVML and it is installed, else None."""
    return pynvml if config["health"]["backend"] in ("auto", "nvml") else None


class Watch:
    """Reads the GPUs every interval and fences or releases the instances on them."""

    def __init__(self, config, *, config_path=None, log=None, clock=time.time, sleep=time.sleep):
        self.config = config
        self.config_path = config_path
        self.config_stamp = self._stamp()
        self.log = log or instance_gate.say
        self.clock = clock
        self.sleep = sleep
        self.run = subprocess.run
        self.nvml = nvml_for(config)
        self.tracks = {item["id"]: Track() for item in config["instances"]}
        self.last = {"verdict": None, "problem": None, "backend": None, "collected": None}
        self.stuck = None  # a reader thread that has not returned
        self.kernel_log_problem = None

    def _stamp(self):
        if not self.config_path:
            return None
        try:
            info = os.stat(self.config_path)
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_size, info.st_ino)

    def maybe_reload(self):
        """Take up a changed configuration file (the role writes it before it starts instances) without a
        restart: instances that stay keep their state, new ones start healthy. A broken file is logged and the
        old configuration kept. Returns True when it changed."""
        stamp = self._stamp()
        if stamp is None or stamp == self.config_stamp:
            return False
        self.config_stamp = stamp
        try:
            config = instance_gate.read_config(self.config_path, load_config)
        except (OSError, ValueError) as exc:
            self.log("configuration %s not taken up, the old one stays: %s" % (self.config_path, exc))
            return False
        self.config = config
        self.nvml = nvml_for(config)
        self.tracks = {item["id"]: self.tracks.get(item["id"], Track()) for item in config["instances"]}
        self.log("configuration %s taken up" % self.config_path)
        return True

    def read_gpus(self):
        health = self.config["health"]
        return gpu_read.read_gpus(health["backend"], health["nvidia_smi_path"], _run_text, shutil.which, self.nvml)

    def read_kernel_log(self):
        health = self.config["health"]
        return gpu_read.read_kernel_log(health["xid_source"], health["kernel_log_path"], _run_text, shutil.which)

    def read_host(self):
        """The GPUs and the kernel log, in a thread given READ_TIMEOUT + 5 s: a reader stuck in the kernel (an
        nvidia-smi in uninterruptible sleep on a GPU that fell off the bus) cannot be killed, and must not stop
        the watch. While a stuck reader has not returned, no other is started. Raises GpuHealthError."""
        if self.stuck is not None and self.stuck.is_alive():
            raise GpuHealthError("an earlier reading of the GPUs has not returned (a hung driver?)")
        self.stuck = None
        outcome = {}

        def work():
            try:
                outcome["value"] = (self.read_gpus(), self.read_kernel_log())
            except GpuHealthError as exc:  # NoDriverError is one
                outcome["error"] = exc

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        worker.join(READ_TIMEOUT + 5)
        if worker.is_alive():
            self.stuck = worker
            raise GpuHealthError("reading the GPUs did not return within %d s (a hung driver?)" % (READ_TIMEOUT + 5))
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    def read(self):
        """(verdict, problem) of one reading of the GPUs and the kernel log (plus the drill file)."""
        try:
            (backend, collected), (text, _source, problem) = self.read_host()
        except GpuHealthError as exc:
            self.last.update(verdict=None, problem=str(exc), backend=None, collected=None)
            return None, str(exc)
        if problem != self.kernel_log_problem:
            self.kernel_log_problem = problem
            if problem:
                self.log("XID check skipped: %s" % problem)
        try:
            with open(self.config["drill_file"], encoding="utf-8", errors="replace") as handle:
                text += "\n" + handle.read()
        except FileNotFoundError:
            pass
        except OSError as exc:
            self.log("cannot read %s: %s" % (self.config["drill_file"], exc))
        verdict = evaluate(
            collected["gpus"],
            thresholds_of(self.config["health"]),
            xid_events=parse_xid(text),
            driver_version=collected["driver_version"],
            count_unmatched_xids=False,
        )
        self.last.update(verdict=verdict, problem=None, backend=backend, collected=collected)
        return verdict, None

    def check_round(self, first=False):
        """One pass: read, judge, fence or release. Returns the number of fenced instances.

        ``first``: the pass before the service reports ready. An instance without its links then has not been
        started (a boot: the boot gate waits for this pass): one bad reading fences it, since a false alarm
        stops nothing. A running one (the watch restarted by a converge) waits for ``fall`` as always."""
        now = self.clock()
        verdict, problem = self.read()
        judged = judge(self.config["instances"], verdict, problem)
        for instance in self.config["instances"]:
            track = self.tracks[instance["id"]]
            ok, reason, detail = judged[instance["id"]]
            idle = first and not has_links(self.config["gate_dir"], instance["id"])
            action = track.step(ok, 1 if idle else self.config["fall"], self.config["rise"])
            if action == "fence":
                self._fence(instance, track, reason, detail, now)
            elif action == "release":
                self._release(instance, track, now)
            elif track.fenced:
                self._keep_fenced(instance, track, now, judged[instance["id"]])
        self.write_state(now)
        return sum(track.fenced for track in self.tracks.values())

    def _note(self, instance, track, now, change):
        """Record (reason, detail) as the instance's state and log text once, when it is new."""
        reason, detail, text = change
        if (reason, detail) != (track.reason, track.detail):
            track.reason, track.detail, track.since = reason, detail, now
            self.log("instance %s: %s" % (instance["id"], text))

    def _fence(self, instance, track, reason, detail, now):
        gate_dir = self.config["gate_dir"]
        problems = []
        try:
            instance_gate.write_atomic(
                instance_gate.fence_marker(gate_dir, instance["id"]), "%s: %s\n" % (reason, detail)
            )
        except OSError as exc:
            problems.append("cannot write the fence marker: %s" % exc)
        for path in instance_gate.link_paths(gate_dir, instance["id"]):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                problems.append("cannot remove %s: %s" % (path, exc))
        problems += stop_containers(
            self.config["docker"], instance["containers"], self.config["stop_timeout"], run=self.run
        )
        track.fenced = True
        self._note(
            instance,
            track,
            now,
            (
                reason,
                detail,
                "fenced (%s): %s; containers stopped%s"
                % (reason, detail, "; problems: " + "; ".join(problems) if problems else ""),
            ),
        )

    def _keep_fenced(self, instance, track, now, judged):
        ok, reason, detail = judged
        gate_dir = self.config["gate_dir"]
        if not os.path.lexists(instance_gate.fence_marker(gate_dir, instance["id"])):
            # The role removes the marker when its own GPU check at converge passed and it starts the instance.
            track.fenced, track.bad = False, 0
            self._note(
                instance, track, now, ("ok", "", "released by a converge of the role (its fence marker was removed)")
            )
            return
        # Links made again while the marker stays (by hand): take them away again.
        if has_links(gate_dir, instance["id"]):
            self.log("instance %s: its links came back while fenced; fencing again" % instance["id"])
            self._fence(instance, track, track.reason, track.detail, now)
        elif not ok:
            self._note(instance, track, now, (reason, detail, "still fenced (%s): %s" % (reason, detail)))

    def _release(self, instance, track, now):
        try:
            os.unlink(instance_gate.fence_marker(self.config["gate_dir"], instance["id"]))
        except FileNotFoundError:
            pass
        except OSError as exc:
            self.log("instance %s: cannot remove the fence marker: %s" % (instance["id"], exc))
            return
        try:
            proc = self.run(
                [self.config["systemctl"], "restart", "--no-block", self.config["gate_unit"]],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            problem = (
                None
                if proc.returncode == 0
                else (proc.stderr or proc.stdout or "").strip() or "rc %d" % proc.returncode
            )
        except (OSError, subprocess.SubprocessError) as exc:
            problem = str(exc)
        if problem:
            # The marker stays away; the gate is asked again on the next pass.
            self.log("instance %s: cannot restart %s: %s" % (instance["id"], self.config["gate_unit"], problem))
            track.good = self.config["rise"] - 1
            return
        track.fenced = False
        self._note(
            instance, track, now, ("ok", "", "GPU healthy again: released, %s restarted" % self.config["gate_unit"])
        )

    def adopt_markers(self):
        """Instances fenced by an earlier run of the watch (the service restarted) stay fenced."""
        for ident, track in self.tracks.items():
            text = instance_gate.read_fence(self.config["gate_dir"], ident)
            if text is None:
                continue
            reason, _sep, detail = text.partition(": ")
            track.fenced, track.reason, track.detail, track.since = (
                True,
                reason or "gpu_unhealthy",
                detail,
                self.clock(),
            )

    def write_state(self, now):
        verdict = self.last["verdict"]
        document = {
            "checked_at": now,
            "problem": self.last["problem"],
            "backend": self.last["backend"],
            "gpus": [
                {key: gpu.get(key) for key in ("index", "uuid", "pci_bus_id", "status", "reasons")}
                for gpu in (verdict["gpus"] if verdict else [])
            ],
            "instances": {
                ident: {
                    "fenced": track.fenced,
                    "reason": track.reason,
                    "detail": track.detail,
                    "since": track.since,
                    "bad_passes": track.bad,
                    "good_passes": track.good,
                }
                for ident, track in self.tracks.items()
            },
        }
        try:
            instance_gate.write_atomic(self.config["state_file"], json.dumps(document, indent=1, sort_keys=True) + "\n")
            if self.config["textfile"]:
                instance_gate.write_atomic(
                    os.path.join(self.config["textfile"], "qwen3vl_gpu_watch.prom"),
                    metrics(self.config["instances"], self.tracks, now),
                )
                collected = self.last["collected"] or {}
                result = dict(
                    verdict or {"status": "unknown", "gpus": [], "gpu_count": 0},
                    check_success=verdict is not None,
                    backend=self.last["backend"],
                    driver_version=collected.get("driver_version"),
                    cuda_version=collected.get("cuda_version"),
                )
                instance_gate.write_atomic(
                    os.path.join(self.config["textfile"], "qwen3vl_gpu_health.prom"),
                    render_prometheus(result, timestamp=now),
                )
        except OSError as exc:
            self.log("cannot write the state: %s" % exc)

    def run_forever(self, once=False):
        """Pass after pass, every interval (the first one before telling systemd it is ready)."""
        self.adopt_markers()
        fenced = self.check_round(first=True)
        try:
            sd_notify("READY=1")
        except OSError as exc:
            self.log("cannot notify systemd: %s" % exc)
        while not once:
            self.sleep(self.config["interval"])
            self.maybe_reload()
            fenced = self.check_round()
        return fenced


USAGE = "usage: qwen3vl-gpu-watch CONFIG.json [--check-config | --once]"


def main(argv=None):
    """Exit status: 0 (with --once: no instance fenced), 1 an instance fenced (--once), 2 usage or configuration error."""
    argv = list(sys.argv[1:] if argv is None else argv)
    flags = {arg for arg in argv if arg.startswith("--")}
    paths = [arg for arg in argv if not arg.startswith("--")]
    if len(paths) != 1 or flags - {"--check-config", "--once"}:
        instance_gate.say(USAGE, sys.stderr)
        return 2
    try:
        config = instance_gate.read_config(paths[0], load_config)
    except (OSError, ValueError) as exc:
        instance_gate.say("qwen3vl-gpu-watch: %s: %s" % (paths[0], exc), sys.stderr)
        return 2
    if "--check-config" in flags:
        return 0
    return 1 if Watch(config, config_path=paths[0]).run_forever(once="--once" in flags) else 0
