# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Active health checks for nginx's upstreams: the core of ``qwen3vl-upstream-check``.

nginx OSS only notices a dead server when a request to it fails, and a 502 or a hang answered to a
POST is not retried. This checker runs beside nginx on every load balancer (role nginx_lb). It probes
each model instance often, keeps an in/out verdict per upstream server with hysteresis, and writes
nginx's upstream blocks with ``down`` on the servers that are out, then reloads nginx (SIGHUP: new
workers take the new file, old workers finish the requests they hold). nginx has taken a change once
none of the workers it had before the signal still accepts connections; the checker watches for that in
``/proc`` and notes the time (``applied`` in the state, the reload's duration in the metrics): until then,
new requests may still reach a server that was taken out.

What is probed (the ``checks`` of each server in the configuration):
- a WebUI server: its WebUI health URL *and* its vLLM's ``/health`` (a WebUI whose model server is
  gone answers 502 in milliseconds, and ``least_conn`` would send it most of the traffic);
- a vLLM API server: its ``/health`` (vLLM answers 503 when its engine is dead).
A check passes on HTTP 2xx within ``timeout`` seconds, connect included; refused, reset, timed out
(a stopped process: the port still accepts, nothing answers) and non-2xx all fail, each with a reason.

Verdicts: each distinct check URL is probed every ``interval`` seconds (a probe that times out is
followed at once by the next). Its first result sets its state; after that it turns down after
``fall`` failures in a row and up after ``rise`` passes in a row. A server is in rotation when all of
its checks are up and it is not drained (a drain key listed in the drain directory). The longest time
from a fault to the server being out is ``out_of_rotation_bound``: one interval to the first probe that
sees it, then ``fall`` probes of at most max(interval, timeout) each.

Fail open: when no server of an upstream would be left in rotation, all of them are written in (the
checker may be the one that is cut off; nginx's passive checks and retries then do what they can), and
the state says ``failing_open``.

Pure Python (asyncio, standard library), no Ansible. The role copies this file next to a launcher; the
unit tests call the functions and drive :class:`Checker` with a fake clock and prober.
"""

import asyncio
import ipaddress
import json
import os
import re
import signal
import socket
import sys
import tempfile
import time

DEFAULTS = {
    "interval": 0.15,
    "timeout": 0.3,
    "fall": 2,
    "rise": 3,
    "nginx_pid_file": "/run/nginx.pid",
    "upstreams_conf": "/etc/nginx/qwen3vl/upstreams.conf",
    "state_file": "/run/qwen3vl-upstream-check/state.json",
    "drain_dir": "/var/lib/qwen3vl-upstream-check/drain",
    "textfile": "",
    "heartbeat": 5.0,
    "nginx": {"balance": "least_conn", "max_fails": 1, "fail_timeout": "5s", "keepalive": 32},
}
UPSTREAMS = ("webui", "api")
# how long after a reload the checker watches for nginx to take it (see Checker.confirm)
RELOAD_CONFIRM_SECONDS = 10.0
_SERVER_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$")
_URL_RE = re.compile(r"^http://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})(/[!-~]*)$")
_NGINX_TIME_RE = re.compile(r"^[0-9]+[smhdwMy]?$")  # fail_timeout is read in whole seconds: no ms
_BALANCE = ("least_conn", "ip_hash", "random", "random two least_conn", "round_robin")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_KEY_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,200}$")


def _number(config, key, errors, bounds, *, integer=False):
    minimum, maximum = bounds
    value = config.get(key, DEFAULTS[key])
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not minimum <= value <= maximum:
        errors.append(
            "%s: %r is not a %s from %s to %s" % (key, value, "whole number" if integer else "number", minimum, maximum)
        )
        return DEFAULTS[key]
    return value


def _path(config, key, errors, allow_empty=False):
    value = config.get(key, DEFAULTS[key])
    if allow_empty and value == "":
        return value
    if not isinstance(value, str) or not value.startswith("/") or "\n" in value:
        errors.append("%s: %r is not an absolute path" % (key, value))
        return DEFAULTS[key]
    return value


def parse_url(url):
    """``http://host:port/path`` -> (host, port, path), or None. Only plain HTTP: the backends are on the
    private network the load balancers share with the GPU hosts."""
    match = _URL_RE.match(url) if isinstance(url, str) else None
    if not match or not 0 < int(match.group(2)) < 65536:
        return None
    host = match.group(1)
    return (host[1:-1] if host.startswith("[") else host, int(match.group(2)), match.group(3))


def _nginx_settings(raw, errors):
    settings = dict(DEFAULTS["nginx"])
    if not isinstance(raw, dict):
        errors.append("nginx: %r is not a mapping" % (raw,))
        return settings
    unknown = sorted(set(raw) - set(settings))
    if unknown:
        errors.append("nginx: unknown settings: %s" % ", ".join(map(str, unknown)))
    settings.update(raw)
    if settings["balance"] not in _BALANCE:
        errors.append("nginx.balance: %r is not one of %s" % (settings["balance"], ", ".join(_BALANCE)))
    for key in ("max_fails", "keepalive"):
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            errors.append("nginx.%s: %r is not a whole number >= 0" % (key, value))
    if not isinstance(settings["fail_timeout"], str) or not _NGINX_TIME_RE.match(settings["fail_timeout"]):
        errors.append("nginx.fail_timeout: %r is not an nginx time (e.g. 5s)" % (settings["fail_timeout"],))
    return settings


def _servers(kind, raw, errors):
    servers = []
    if not isinstance(raw, list):
        errors.append("upstreams.%s: %r is not a list" % (kind, raw))
        return servers
    seen = set()
    for index, entry in enumerate(raw):
        where = "upstreams.%s[%d]" % (kind, index)
        if not isinstance(entry, dict):
            errors.append("%s: %r is not a mapping" % (where, entry))
            continue
        server = entry.get("server")
        if not isinstance(server, str) or not _SERVER_RE.match(server) or not 0 < int(server.rsplit(":", 1)[1]) < 65536:
            errors.append("%s.server: %r is not host:port" % (where, server))
            continue
        if server in seen:
            errors.append("%s.server: %s is listed twice" % (where, server))
        seen.add(server)
        checks = entry.get("checks")
        if not isinstance(checks, list) or not checks:
            errors.append("%s.checks: needs at least one {name, url}" % where)
            continue
        good = []
        for n, check in enumerate(checks):
            if not isinstance(check, dict) or not _NAME_RE.match(str(check.get("name", ""))):
                errors.append("%s.checks[%d]: needs a name of letters, digits, _ . -" % (where, n))
            elif parse_url(check.get("url")) is None:
                errors.append("%s.checks[%d].url: %r is not http://host:port/path" % (where, n, check.get("url")))
            else:
                good.append({"name": check["name"], "url": check["url"]})
        key = entry.get("key", key_of(server))
        if not isinstance(key, str) or not _KEY_RE.match(key):
            errors.append("%s.key: %r is not a drain key (letters, digits, _ . @ -)" % (where, key))
        servers.append(
            {
                "upstream": kind,
                "server": server,
                "host": str(entry.get("host", "")),
                "instance": str(entry.get("instance", "")),
                "key": key,
                "checks": good,
            }
        )
    return servers


def load_config(raw):
    """Check a configuration mapping (the JSON the role writes). Returns (config, errors)."""
    errors = []
    if not isinstance(raw, dict):
        return None, ["the configuration is not a mapping"]
    unknown = sorted(set(raw) - set(DEFAULTS) - {"upstreams"})
    if unknown:
        errors.append("unknown settings: %s" % ", ".join(unknown))
    config = {
        "interval": _number(raw, "interval", errors, (0.05, 60)),
        "timeout": _number(raw, "timeout", errors, (0.05, 60)),
        "fall": _number(raw, "fall", errors, (1, 100), integer=True),
        "rise": _number(raw, "rise", errors, (1, 100), integer=True),
        "heartbeat": _number(raw, "heartbeat", errors, (1, 3600)),
        "nginx_pid_file": _path(raw, "nginx_pid_file", errors),
        "upstreams_conf": _path(raw, "upstreams_conf", errors),
        "state_file": _path(raw, "state_file", errors),
        "drain_dir": _path(raw, "drain_dir", errors),
        "textfile": _path(raw, "textfile", errors, allow_empty=True),
        "nginx": _nginx_settings(raw.get("nginx", {}), errors),
    }
    upstreams = raw.get("upstreams")
    if not isinstance(upstreams, dict) or sorted(upstreams) != sorted(UPSTREAMS):
        errors.append("upstreams: needs exactly the keys %s" % ", ".join(UPSTREAMS))
        upstreams = {}
    config["servers"] = []
    for kind in UPSTREAMS:
        servers = _servers(kind, upstreams.get(kind, []), errors)
        if kind in upstreams and not servers and not errors:
            errors.append("upstreams.%s: no servers" % kind)
        config["servers"].extend(servers)
    return config, errors


def out_of_rotation_bound(config):
    """Seconds from a fault (dead or hung) to the server being written out, before the reload."""
    return config["interval"] + config["fall"] * max(config["interval"], config["timeout"])


def back_in_rotation_bound(config):
    """Seconds from a recovery to the server being written back in, before the reload."""
    return config["interval"] + config["rise"] * max(config["interval"], config["timeout"])


class CheckState:
    """Hysteresis for one check URL."""

    def __init__(self):
        self.up = None  # unknown until the first result
        self.passes = 0
        self.failures = 0
        self.reason = "unknown"
        self.detail = ""

    def record(self, ok, reason, detail, fall, rise):
        """Count one result; return True when the verdict changed."""
        if ok:
            self.passes, self.failures = self.passes + 1, 0
        else:
            self.passes, self.failures = 0, self.failures + 1
            self.reason, self.detail = reason, detail
        before = self.up
        if self.up is None:
            self.up = ok
        elif self.up and self.failures >= fall:
            self.up = False
        elif not self.up and self.passes >= rise:
            self.up = True
        if self.up:
            self.reason, self.detail = "ok", ""
        return self.up != before


def verdicts(servers, checks, drained, assume_up=False):
    """Which servers are in rotation, and why not. ``checks``: url -> CheckState; ``drained``: keys;
    ``assume_up``: every check counts as passing (the file the role writes before the first probe).

    Returns ({server id: (in_rotation, reason)}, {upstream: failing_open}); a server id is
    (upstream, server). Fails open per upstream when nothing would be left in it."""
    result = {}
    for s in servers:
        if s["key"] in drained:
            result[(s["upstream"], s["server"])] = (False, "draining")
            continue
        reason = "ok"
        for check in [] if assume_up else s["checks"]:
            state = checks[check["url"]]
            if state.up is None:
                reason = "unknown"
            elif not state.up:
                reason = "%s_%s" % (check["name"], state.reason)
                break
        result[(s["upstream"], s["server"])] = (reason in ("ok", "unknown"), reason)
    failing_open = {}
    for kind in UPSTREAMS:
        ids = [(s["upstream"], s["server"]) for s in servers if s["upstream"] == kind]
        failing_open[kind] = bool(ids) and not any(result[i][0] for i in ids)
        if failing_open[kind]:
            for i in ids:
                result[i] = (True, result[i][1])
    return result, failing_open


def render(config, rotation):
    """nginx's two upstream blocks; a server out of rotation gets ``down``."""
    nginx = config["nginx"]
    lines = [
        "# Written by qwen3vl-upstream-check (role qwen3vl.ha.nginx_lb) from %s;" % "its configuration",
        "# servers out of rotation carry `down`. Edits here are overwritten.",
    ]
    for kind in UPSTREAMS:
        lines.append("upstream qwen3vl_%s {" % kind)
        lines.append("    zone qwen3vl_%s 64k;" % kind)
        if nginx["balance"] != "round_robin":
            lines.append("    %s;" % nginx["balance"])
        for s in config["servers"]:
            if s["upstream"] != kind:
                continue
            down = "" if rotation[(kind, s["server"])][0] else " down"
            comment = " ".join(x for x in (s["host"], s["instance"]) if x)
            lines.append(
                "    server %s max_fails=%d fail_timeout=%s%s;%s"
                % (s["server"], nginx["max_fails"], nginx["fail_timeout"], down, "  # " + comment if comment else "")
            )
        if nginx["keepalive"]:
            lines.append("    keepalive %d;" % nginx["keepalive"])
        lines.append("}")
    return "\n".join(lines) + "\n"


def _label(value):
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def metrics(config, rotation, failing_open, transitions, now, *, reload_seconds=None):
    """Prometheus text for node_exporter's textfile collector (``reload_seconds``: how long nginx took to
    take the last confirmed reload; left out until there is one)."""
    out = [
        "# HELP qwen3vl_lb_backend_in_rotation 1 when this load balancer sends new requests to the server;"
        " reason says why not (or ok).",
        "# TYPE qwen3vl_lb_backend_in_rotation gauge",
    ]
    for s in config["servers"]:
        in_rotation, reason = rotation[(s["upstream"], s["server"])]
        out.append(
            'qwen3vl_lb_backend_in_rotation{upstream="%s",server="%s",host="%s",instance="%s",reason="%s"} %d'
            % (s["upstream"], _label(s["server"]), _label(s["host"]), _label(s["instance"]), reason, in_rotation)
        )
    out += [
        "# HELP qwen3vl_lb_backend_transitions_total Times the server went in or out of rotation since the"
        " checker started.",
        "# TYPE qwen3vl_lb_backend_transitions_total counter",
    ]
    for s in config["servers"]:
        out.append(
            'qwen3vl_lb_backend_transitions_total{upstream="%s",server="%s"} %d'
            % (s["upstream"], _label(s["server"]), transitions.get((s["upstream"], s["server"]), 0))
        )
    out += [
        "# HELP qwen3vl_lb_upstream_failing_open 1 when every server of the upstream failed its checks and"
        " all were left in.",
        "# TYPE qwen3vl_lb_upstream_failing_open gauge",
    ]
    for kind in UPSTREAMS:
        out.append('qwen3vl_lb_upstream_failing_open{upstream="%s"} %d' % (kind, failing_open.get(kind, False)))
    out += [
        "# HELP qwen3vl_lb_checker_heartbeat_timestamp_seconds When the checker last wrote this file.",
        "# TYPE qwen3vl_lb_checker_heartbeat_timestamp_seconds gauge",
        "qwen3vl_lb_checker_heartbeat_timestamp_seconds %.3f" % now,
    ]
    if reload_seconds is not None:
        out += [
            "# HELP qwen3vl_lb_checker_reload_seconds From the checker's signal to nginx until none of its old"
            " workers accepted connections, for the last reload.",
            "# TYPE qwen3vl_lb_checker_reload_seconds gauge",
            "qwen3vl_lb_checker_reload_seconds %.3f" % reload_seconds,
        ]
    return "\n".join(out) + "\n"


def state_document(config, rotation, failing_open, since, now, *, applied=None):
    """The JSON the drain playbook, the drills and the tests read. Per server: ``since`` when the checker
    decided its verdict, ``applied`` when nginx was seen serving it (null until then, or when not watched)."""
    applied = applied or {}
    return {
        "time": now,
        "failing_open": failing_open,
        "servers": [
            {
                "upstream": s["upstream"],
                "server": s["server"],
                "host": s["host"],
                "instance": s["instance"],
                "key": s["key"],
                "in_rotation": rotation[(s["upstream"], s["server"])][0],
                "reason": rotation[(s["upstream"], s["server"])][1],
                "since": since.get((s["upstream"], s["server"])),
                "applied": applied.get((s["upstream"], s["server"])),
            }
            for s in config["servers"]
        ],
    }


def write_atomic(path, text, mode=0o644):
    """Replace ``path`` with ``text`` when it differs; return True when it was written."""
    try:
        with open(path, encoding="utf-8") as handle:
            if handle.read() == text:
                return False
    except OSError:
        pass
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".%s." % os.path.basename(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


def read_drained(drain_dir):
    """Drain keys: the names of the files in ``drain_dir`` (a missing directory drains nothing)."""
    try:
        return {name for name in os.listdir(drain_dir) if _KEY_RE.match(name) and not name.startswith(".")}
    except OSError:
        return set()


_OS_ERRORS = {ConnectionRefusedError: "refused", ConnectionResetError: "reset"}


async def _status_line(host, port, path):
    reader, writer = await asyncio.open_connection(host, port)
    try:
        request = "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: qwen3vl-upstream-check\r\nConnection: close\r\n\r\n"
        writer.write((request % (path, "[%s]" % host if ":" in host else host, port)).encode("ascii"))
        await writer.drain()
        return await reader.readline()
    finally:
        writer.close()


async def probe(url, timeout):
    """GET ``url``; (ok, reason, detail). Reasons: refused, reset, timeout, http_<status>, error."""
    host, port, path = parse_url(url)
    try:
        status_line = await asyncio.wait_for(_status_line(host, port, path), timeout)
    except asyncio.TimeoutError:  # noqa: UP041 - not the builtin before Python 3.11 (Ubuntu 22.04)
        return False, "timeout", "no answer within %gs" % timeout
    except OSError as exc:
        reason = _OS_ERRORS.get(type(exc), "error")
        return False, reason, str(exc) or reason
    except ValueError as exc:  # e.g. a first line longer than asyncio's 64 KiB line limit
        return False, "error", "not an HTTP answer: %s" % exc
    parts = status_line.decode("latin-1").split()
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return False, "error", "not an HTTP answer: %r" % status_line[:80]
    status = int(parts[1])
    if 200 <= status < 300:
        return True, "ok", ""
    return False, "http_%d" % status, "HTTP %d" % status


def _verdict_text(in_rotation, reason):
    if not in_rotation:
        return "out of rotation"
    return "in rotation" if reason in ("ok", "unknown") else "in rotation, failing open despite"


class Checker:
    """The decisions: fed probe results, it keeps verdicts and writes nginx's file, the state and metrics.

    ``reload`` is called after the upstreams file changed; ``log`` gets one line per transition;
    ``clock`` gives seconds since the epoch. Everything touching the system is passed in.
    """

    def __init__(self, config, reload, log, clock=time.time, applied=None):
        self.config = config
        self.reload = reload
        self.applied_check = applied
        self.log = log
        self.clock = clock
        self.checks = {}
        for s in config["servers"]:
            for check in s["checks"]:
                self.checks.setdefault(check["url"], CheckState())
        self.rotation = {}
        self.failing_open = {}
        self.since = {}
        self.applied = {}
        self.pending = None
        self.reload_seconds = None
        self.transitions = {}
        self.drained = set()
        self.written = 0.0
        self.reloads = 0
        self.textfile_failed = False
        self.retry = False
        self.reload_failed = False
        self.problem = None

    def urls(self):
        return sorted(self.checks)

    def record(self, url, ok, reason, detail=""):
        """One probe result; returns True when a check's verdict changed."""
        state = self.checks[url]
        changed = state.record(ok, reason, detail, self.config["fall"], self.config["rise"])
        if changed and state.up is False:
            self.log("check %s down: %s%s" % (url, state.reason, " (%s)" % state.detail if state.detail else ""))
        elif changed and state.up:
            self.log("check %s up" % url)
        return changed

    def ready(self):
        """True once every check has a first result (before that nothing is written)."""
        return all(state.up is not None for state in self.checks.values())

    def update(self, drained=None, force=False):
        """Recompute the verdicts; write and reload when the upstreams changed. Returns True on a reload."""
        if drained is not None:
            self.drained = set(drained)
        now = self.clock()
        rotation, failing_open = verdicts(self.config["servers"], self.checks, self.drained)
        changed = rotation != self.rotation or failing_open != self.failing_open
        moved = set()
        for sid, (in_rotation, reason) in rotation.items():
            old = self.rotation.get(sid)
            if old is None or old != (in_rotation, reason):
                if old is not None and old[0] != in_rotation:
                    self.transitions[sid] = self.transitions.get(sid, 0) + 1
                if old is None or old[0] != in_rotation:
                    self.since[sid] = now
                    moved.add(sid)
                server = next(s for s in self.config["servers"] if (s["upstream"], s["server"]) == sid)
                self.log(
                    "%s %s %s (%s %s): %s"
                    % (
                        server["host"] or "-",
                        server["instance"] or "-",
                        _verdict_text(in_rotation, reason),
                        sid[0],
                        sid[1],
                        reason,
                    )
                )
        for kind, value in failing_open.items():
            if value != self.failing_open.get(kind, False):
                self.log(
                    "upstream %s: %s"
                    % (
                        kind,
                        "every server failed its checks, all left in (failing open)"
                        if value
                        else "no longer failing open",
                    )
                )
        self.rotation, self.failing_open = rotation, failing_open
        for sid in moved:  # nginx serves the new verdict only once it has taken the reload that carries it
            self.applied.pop(sid, None)
        reloaded = False
        if changed or force or self.retry:
            reloaded = self._apply(rotation, now)
        if changed or force or now - self.written >= self.config["heartbeat"]:
            self.write_state(now)
        return reloaded

    def _apply(self, rotation, now):
        """Write nginx's file and reload; a failed write or reload is retried at the next update (the
        heartbeat brings one within ``heartbeat`` seconds) instead of ending the checker."""
        try:
            written = write_atomic(self.config["upstreams_conf"], render(self.config, rotation))
        except OSError as exc:
            self._problem("cannot write %s: %s" % (self.config["upstreams_conf"], exc))
            self.retry = True
            return False
        if not (written or self.reload_failed):
            self.retry = False
            if self.pending is None:  # nginx already has this file (else: the pending reload carries it)
                self._taken(self._unapplied(), now)
            return False
        token = self.reload()
        if token is False:
            self._problem("could not signal nginx (pid file %s); trying again" % self.config["nginx_pid_file"])
            self.reload_failed = self.retry = True
            return False
        self.reload_failed = self.retry = False
        self.problem = None
        self.reloads += 1
        if self.applied_check is not None:  # a later reload covers what an unconfirmed earlier one carried
            self.pending = {"token": token, "sent": now, "verdicts": self._unapplied()}
        return True

    def _unapplied(self):
        """{server: since} of the servers whose current verdict nginx is not known to serve yet."""
        return {sid: self.since.get(sid) for sid in self.rotation if sid not in self.applied}

    def _taken(self, verdicts, now):
        for sid, since in verdicts.items():
            if self.since.get(sid) == since and sid not in self.applied:  # (not moved again since)
                self.applied[sid] = now

    def confirm(self):
        """While a reload is pending: when nginx has taken it, note when (``applied``, the reload's duration)
        and write the state; give up after RELOAD_CONFIRM_SECONDS. Returns True when the state was written."""
        if self.pending is None:
            return False
        now = self.clock()
        pending = self.pending
        if self.applied_check(pending["token"]):
            self.pending = None
            self._taken(pending["verdicts"], now)
            self.reload_seconds = now - pending["sent"]
            self.write_state(now)
            return True
        if now - pending["sent"] > RELOAD_CONFIRM_SECONDS:
            self.pending = None
            self._problem(
                "nginx has not taken the reload of %.1fs ago: the workers it had before still accept connections"
                " (a configuration nginx refused? see its error log)" % (now - pending["sent"])
            )
        return False

    def _problem(self, text):
        if text != self.problem:  # once per distinct problem, not at every retry
            self.log(text)
        self.problem = text

    def write_state(self, now):
        self.written = now
        doc = state_document(self.config, self.rotation, self.failing_open, self.since, now, applied=self.applied)
        try:
            write_atomic(self.config["state_file"], json.dumps(doc, indent=1, sort_keys=True) + "\n")
        except OSError as exc:
            self._problem("cannot write the state file %s: %s" % (self.config["state_file"], exc))
        if self.config["textfile"]:
            text = metrics(
                self.config, self.rotation, self.failing_open, self.transitions, now, reload_seconds=self.reload_seconds
            )
            try:
                write_atomic(self.config["textfile"], text)
            except OSError as exc:  # e.g. no node_exporter textfile directory on this host (yet)
                if not self.textfile_failed:
                    self.log("cannot write the metrics file %s: %s" % (self.config["textfile"], exc))
                self.textfile_failed = True
            else:
                self.textfile_failed = False

    def due(self):
        """True when the heartbeat wants the state and metrics written again, or a write or reload is retried."""
        return self.retry or self.clock() - self.written >= self.config["heartbeat"]


def nginx_workers(master, proc="/proc"):
    """{pid: start time (clock ticks after boot)} of ``master``'s worker processes that still accept
    connections: an old worker told to quit calls itself "worker process is shutting down", then closes its
    listening sockets and finishes the requests it holds."""
    workers = {}
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            with open(os.path.join(proc, entry, "stat"), encoding="utf-8", errors="replace") as handle:
                fields = handle.read().rpartition(")")[2].split()
            if int(fields[1]) != master:
                continue
            with open(os.path.join(proc, entry, "cmdline"), "rb") as handle:
                title = handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except (OSError, ValueError, IndexError):
            continue  # a process that ended while we looked
        if "worker process" in title and "shutting down" not in title:
            workers[int(entry)] = int(fields[19])  # field 22 of stat: starttime
    return workers


def _uptime_ticks(proc="/proc"):
    with open(os.path.join(proc, "uptime"), encoding="ascii") as handle:
        return float(handle.read().split()[0]) * os.sysconf("SC_CLK_TCK")


def reload_nginx(pid_file, proc="/proc"):
    """SIGHUP to nginx's master; a stopped nginx reads the file when it starts. Returns what
    :func:`nginx_took` needs (the master, the workers it had, the time since boot in clock ticks), or False
    when nginx could not be signalled."""
    try:
        with open(pid_file, encoding="ascii") as handle:
            pid = int(handle.read().strip())
        before = set(nginx_workers(pid, proc))
        ticks = _uptime_ticks(proc)
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError):
        return False
    return {"master": pid, "workers": before, "ticks": ticks}


def nginx_took(token, proc="/proc"):
    """True once nginx runs workers, each started since the signal (one tick of slack), and none of those it
    had before still accepts connections."""
    now = nginx_workers(token["master"], proc)
    return bool(now) and not set(now) & token["workers"] and min(now.values()) >= token["ticks"] - 1


async def _probe_loop(checker, url, queue):
    config = checker.config
    while True:
        started = time.monotonic()
        try:
            ok, reason, detail = await probe(url, config["timeout"])
        except Exception as exc:  # noqa: BLE001 - a probe loop that dies would freeze this check's verdict
            ok, reason, detail = False, "error", "%s: %s" % (type(exc).__name__, exc)
        await queue.put((url, ok, reason, detail))
        await asyncio.sleep(max(0.0, config["interval"] - (time.monotonic() - started)))


async def run(checker, stop):
    """Probe every check URL on its own schedule and apply the results as they come."""
    queue = asyncio.Queue()
    tasks = [asyncio.ensure_future(_probe_loop(checker, url, queue)) for url in checker.urls()]
    stop_task = asyncio.ensure_future(stop.wait())
    first = True
    try:
        while not stop.is_set():
            get = asyncio.ensure_future(queue.get())
            # while a reload is pending, look every 10 ms whether nginx has taken it
            wait = 0.01 if checker.pending else 1.0
            done, _unused = await asyncio.wait({get, stop_task}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            checker.confirm()
            if get not in done:
                get.cancel()
                if checker.pending:
                    continue
                if checker.ready():
                    checker.update(read_drained(checker.config["drain_dir"]))
                continue
            changed = checker.record(*get.result())
            while not queue.empty():
                changed = checker.record(*queue.get_nowait()) or changed
            if not checker.ready():
                continue
            drained = read_drained(checker.config["drain_dir"])
            if first or changed or drained != checker.drained or checker.due():
                checker.update(drained, force=first)
                first = False
    finally:
        for task in tasks + [stop_task]:
            task.cancel()


def key_of(text):
    """A drain key (also a file name) from any text, e.g. "<host>@<instance id>": letters, digits, _ . @ -."""
    return re.sub(r"[^A-Za-z0-9_.@-]", "_", str(text))[:200]


def _hex_address(text):
    """An address from /proc/net/tcp{,6} (hex, 32-bit words in host order) as an ipaddress object."""
    raw = bytes.fromhex(text)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4)) if sys.byteorder == "little" else raw
    address = ipaddress.ip_address(words)
    return address.ipv4_mapped or address if address.version == 6 else address


def _nginx_socket_inodes(proc="/proc"):
    inodes = set()
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        try:
            with open(os.path.join(proc, pid, "comm"), encoding="utf-8") as handle:
                if handle.read().strip() != "nginx":
                    continue
            fd_dir = os.path.join(proc, pid, "fd")
            for fd in os.listdir(fd_dir):
                target = os.readlink(os.path.join(fd_dir, fd))
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue  # a process that ended while we looked
    return inodes


def _resolve(server):
    host, port = server.rsplit(":", 1)
    host = host.strip("[]")
    try:
        return {(ipaddress.ip_address(host), int(port))}
    except ValueError:
        infos = socket.getaddrinfo(host, int(port), proto=socket.IPPROTO_TCP)
        return {(ipaddress.ip_address(info[4][0]), int(port)) for info in infos}


def nginx_connections(servers, proc="/proc"):
    """How many established TCP connections nginx's processes hold to each of ``servers`` ("host:port")."""
    wanted = {server: _resolve(server) for server in servers}
    inodes = _nginx_socket_inodes(proc)
    counts = dict.fromkeys(servers, 0)
    for table in ("tcp", "tcp6"):
        try:
            with open(os.path.join(proc, "net", table), encoding="ascii") as handle:
                lines = handle.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != "01" or fields[9] not in inodes:  # 01 = ESTABLISHED
                continue
            address, port = fields[2].split(":")
            remote = (_hex_address(address), int(port, 16))
            for server, targets in wanted.items():
                if remote in targets:
                    counts[server] += 1
    return counts


def _read_state(config):
    try:
        with open(config["state_file"], encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _key_state(config, key, since):
    """(whether the checker wrote its state at or after ``since``, that state's entries for ``key``)."""
    state = _read_state(config) or {}
    mine = [x for x in state.get("servers", []) if x.get("key") == key]
    return bool(state) and state.get("time", 0) >= since, mine


def drain(config, key, timeout, *, clock=time.time, sleep=time.sleep, connections=nginx_connections):
    """Take the servers of ``key`` out of rotation on this load balancer and wait until nginx holds no
    connection to them (open streams finished), at most ``timeout`` seconds. Returns a result mapping:
    ``no_checker`` (no state file: no checker runs here; nothing is marked), ``failed`` (the checker did
    not confirm within 10 s), ``timed_out`` (connections still open, or the upstream fails open so the
    servers stay in rotation), else ``idle_after``."""
    key = key_of(key)
    start = clock()
    servers = [s["server"] for s in config["servers"] if s["key"] == key]
    result = {"key": key, "changed": False, "servers": servers, "out_after": None, "idle_after": None}
    if _read_state(config) is None:
        result["no_checker"] = True
        result["msg"] = "%s: no qwen3vl-upstream-check state here (%s): nothing drained" % (key, config["state_file"])
        return result
    os.makedirs(config["drain_dir"], exist_ok=True)
    path = os.path.join(config["drain_dir"], key)
    result["changed"] = not os.path.exists(path)
    with open(path, "a", encoding="utf-8"):
        pass
    if not servers:
        result["msg"] = "%s: not in this load balancer's upstreams (nothing to drain)" % key
        return result
    while True:  # the running checker writes the servers out (reason draining) within one probe interval
        fresh, mine = _key_state(config, key, start)
        if fresh and mine and all(x["reason"] == "draining" for x in mine):
            result["out_after"] = round(clock() - start, 3)
            break
        if clock() - start > min(timeout, 10.0):
            result["failed"] = True
            result["msg"] = "%s: qwen3vl-upstream-check did not take it out (is the service running?)" % key
            return result
        sleep(0.05)
    if any(x["in_rotation"] for x in mine):
        # the last servers of an upstream: the checker fails open and keeps them in (nothing else would serve)
        result["timed_out"] = True
        result["msg"] = "%s: still in rotation, nothing else is (the upstream fails open); marked drained" % key
        return result
    while True:  # then the open requests and streams on it finish (old nginx workers keep them)
        left = connections(servers)
        result["connections"] = left
        if not any(left.values()):
            result["idle_after"] = round(clock() - start, 3)
            return result
        if clock() - start > timeout:
            result["timed_out"] = True
            result["msg"] = "%s: still %d open connections after %gs" % (key, sum(left.values()), timeout)
            return result
        sleep(0.2)


def undrain(config, key, timeout, *, clock=time.time, sleep=time.sleep):
    """Let the servers of ``key`` back in; wait (at most ``timeout`` s) until the checker has them in rotation."""
    key = key_of(key)
    servers = [s["server"] for s in config["servers"] if s["key"] == key]
    path = os.path.join(config["drain_dir"], key)
    changed = os.path.exists(path)
    if changed:
        os.unlink(path)
    start = clock()
    result = {"key": key, "changed": changed, "servers": servers, "in_after": None}
    while servers:
        fresh, mine = _key_state(config, key, start)
        if fresh and mine and all(x["in_rotation"] for x in mine):
            result["in_after"] = round(clock() - start, 3)
            break
        if clock() - start > timeout:
            result["timed_out"] = True
            reasons = sorted({x["reason"] for x in mine})
            result["msg"] = "%s: not back in rotation after %gs (%s)" % (key, timeout, ", ".join(reasons) or "?")
            break
        sleep(0.05)
    return result


def _drain_command(config, argv):
    """drain|undrain KEY [--timeout SECONDS]: one JSON line; exit 0 done, 1 failed, 2 no checker here,
    3 timed out (or the servers stay in rotation because their upstream fails open)."""
    timeout = 60.0
    try:
        if "--timeout" in argv:
            timeout = float(argv[argv.index("--timeout") + 1])
        action, key = argv[0], argv[1]
        result = drain(config, key, timeout) if action == "drain" else undrain(config, key, timeout)
    except (IndexError, ValueError, OSError) as exc:  # (a bad --timeout, a server name that does not resolve)
        result = {"failed": True, "msg": "%s: %s" % (type(exc).__name__, exc)}
    _say(json.dumps(result, sort_keys=True))
    if result.get("no_checker"):
        return 2
    return 1 if result.get("failed") else 3 if result.get("timed_out") else 0


def _say(text, stream=None):
    """One line to stdout (the journal, for the service) or to ``stream``, flushed at once."""
    stream = stream or sys.stdout
    stream.write(text + "\n")
    stream.flush()


def main(argv=None):
    """qwen3vl-upstream-check CONFIG.json [--check-config | drain KEY [--timeout S] | undrain KEY [--timeout S]]"""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        _say(main.__doc__)
        return 0 if argv else 2
    try:
        with open(argv[0], encoding="utf-8") as handle:
            raw = json.load(handle)
    except (OSError, ValueError) as exc:
        _say("qwen3vl-upstream-check: cannot read %s: %s" % (argv[0], exc), sys.stderr)
        return 2
    config, errors = load_config(raw)
    if errors:
        _say("qwen3vl-upstream-check: %s: %s" % (argv[0], "; ".join(errors)), sys.stderr)
        return 2
    if "--check-config" in argv[1:]:
        return 0
    if len(argv) >= 3 and argv[1] in ("drain", "undrain"):
        return _drain_command(config, argv[1:])

    def log(line):
        _say(line)

    checker = Checker(config, lambda: reload_nginx(config["nginx_pid_file"]), log, applied=nginx_took)
    log(
        "checking %d servers (%d URLs) every %gs, timeout %gs, fall %d, rise %d: out of rotation within %.2fs of a fault"
        % (
            len(config["servers"]),
            len(checker.urls()),
            config["interval"],
            config["timeout"],
            config["fall"],
            config["rise"],
            out_of_rotation_bound(config),
        )
    )
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        loop.run_until_complete(run(checker, stop))
    finally:
        loop.close()
    return 0
