# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure core for /etc/docker/daemon.json: type checks, merging, and what a change needs.

No Ansible import here: the module, the filter and the unit tests all call these functions.
"""

from __future__ import annotations

import copy
import json

from ansible_collections.qwen3vl.ha.plugins.module_utils import checks

# Types of the daemon.json keys this collection knows. dockerd refuses unknown keys
# ("the following directives don't match any configuration option") and then does not start,
# so an unknown key is an error unless the caller allows it by name.
# A type is a Python type, a tuple of them, or ("list", T) / ("dict", T) for containers of T.
KNOWN_KEYS = {
    "allow-nondistributable-artifacts": ("list", str),
    "authorization-plugins": ("list", str),
    "bip": str,
    "bridge": str,
    "builder": dict,
    "cgroup-parent": str,
    "containerd": str,
    "containerd-namespace": str,
    "data-root": str,
    "debug": bool,
    "default-address-pools": ("list", dict),
    "default-cgroupns-mode": str,
    "default-gateway": str,
    "default-ipc-mode": str,
    "default-runtime": str,
    "default-shm-size": str,
    "default-ulimits": ("dict", dict),
    "dns": ("list", str),
    "dns-opts": ("list", str),
    "dns-search": ("list", str),
    "exec-opts": ("list", str),
    "exec-root": str,
    "experimental": bool,
    "features": ("dict", bool),
    "fixed-cidr": str,
    "fixed-cidr-v6": str,
    "group": str,
    "icc": bool,
    "init": bool,
    "init-path": str,
    "insecure-registries": ("list", str),
    "ip": str,
    "ip-forward": bool,
    "ip-masq": bool,
    "ip6tables": bool,
    "iptables": bool,
    "ipv6": bool,
    "labels": ("list", str),
    "live-restore": bool,
    "log-driver": str,
    "log-level": str,
    "log-opts": ("dict", str),
    "max-concurrent-downloads": int,
    "max-concurrent-uploads": int,
    "max-download-attempts": int,
    "metrics-addr": str,
    "mtu": int,
    "no-new-privileges": bool,
    "oom-score-adjust": int,
    "pidfile": str,
    "raw-logs": bool,
    "registry-mirrors": ("list", str),
    "runtimes": ("dict", dict),
    "seccomp-profile": str,
    "selinux-enabled": bool,
    "shutdown-timeout": int,
    "storage-driver": str,
    "storage-opts": ("list", str),
    "tls": bool,
    "tlscacert": str,
    "tlscert": str,
    "tlskey": str,
    "tlsverify": bool,
    "userland-proxy": bool,
    "userland-proxy-path": str,
    "userns-remap": str,
}

# Keys that conflict with how the distribution's systemd unit starts dockerd (-H fd://):
# with them in daemon.json, dockerd refuses to start.
FORBIDDEN_KEYS = {
    "hosts": "conflicts with the '-H fd://' flag of the systemd unit, and dockerd would refuse to start;"
    " set listen addresses with a systemd drop-in instead",
}

# Keys dockerd re-reads on SIGHUP (`systemctl reload docker`); any other change needs a restart.
RELOADABLE_KEYS = frozenset(
    {
        "allow-nondistributable-artifacts",
        "authorization-plugins",
        "builder",
        "debug",
        "default-runtime",
        "features",
        "insecure-registries",
        "labels",
        "live-restore",
        "max-concurrent-downloads",
        "max-concurrent-uploads",
        "max-download-attempts",
        "registry-mirrors",
        "runtimes",
        "shutdown-timeout",
    }
)

LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")


def _type_name(value):
    # Plain JSON type names: Ansible hands over subclasses of str/int/dict (tagged values).
    for kind, name in (
        (bool, "bool"),
        (int, "int"),
        (float, "float"),
        (str, "str"),
        (dict, "dict"),
        (list, "list"),
        (type(None), "null"),
    ):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _matches(value, expected):
    # bool is a subclass of int in Python; JSON and dockerd keep them apart.
    if expected is int:
        return checks.is_int(value)
    return isinstance(value, expected)


def _expected_name(expected):
    return {str: "a string", bool: "a boolean", int: "an integer", dict: "a mapping", list: "a list"}[expected]


def validate(settings, where="daemon.json", allowed_extra_keys=()):
    """Return a list of human-readable errors for a daemon.json mapping (empty when valid).

    ``where`` names the variable the settings came from so that a message says what to fix.
    """
    if not isinstance(settings, dict):
        return ["%s: expected a mapping of daemon.json keys, got %s" % (where, _type_name(settings))]
    errors = []
    for key in sorted(settings):
        value = settings[key]
        path = "%s[%r]" % (where, key)
        if key in FORBIDDEN_KEYS:
            errors.append("%s: this key is refused: %s" % (path, FORBIDDEN_KEYS[key]))
            continue
        expected = KNOWN_KEYS.get(key)
        if expected is None:
            if key not in allowed_extra_keys:
                errors.append(
                    "%s: unknown daemon.json key (dockerd would refuse to start); fix the"
                    " spelling or list it in docker_engine_daemon_extra_keys" % path
                )
            continue
        if isinstance(expected, tuple):
            container, inner = expected
            outer = list if container == "list" else dict
            if not isinstance(value, outer):
                errors.append("%s: expected %s, got %s %r" % (path, _expected_name(outer), _type_name(value), value))
                continue
            items = enumerate(value) if outer is list else sorted(value.items())
            for sub, item in items:
                if not _matches(item, inner):
                    errors.append(
                        "%s[%r]: expected %s, got %s %r" % (path, sub, _expected_name(inner), _type_name(item), item)
                    )
        elif not _matches(value, expected):
            errors.append("%s: expected %s, got %s %r" % (path, _expected_name(expected), _type_name(value), value))
    level = settings.get("log-level")
    if isinstance(level, str):
        checks.add(errors, checks.one_of(level, "%s['log-level']" % where, LOG_LEVELS))
    runtimes = settings.get("runtimes")
    if isinstance(runtimes, dict):
        for name, spec in sorted(runtimes.items()):
            if isinstance(spec, dict) and not isinstance(spec.get("path"), str):
                errors.append("%s['runtimes'][%r]: needs a 'path' string" % (where, name))
    return errors


def merge(base, overlay):
    """Deep-merge ``overlay`` into a copy of ``base``: mappings merge key by key, anything else
    (lists included) is replaced. Keys only in ``base`` survive: that is how other roles' keys
    outlive a run of this one."""
    result = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def remove_keys(settings, keys):
    """Return a copy of ``settings`` without the top-level ``keys``."""
    return {k: copy.deepcopy(v) for k, v in settings.items() if k not in set(keys)}


def changed_keys(before, after):
    """Top-level keys whose value differs between two mappings (added, removed or changed)."""
    return sorted(k for k in set(before) | set(after) if before.get(k, _MISSING) != after.get(k, _MISSING))


def needs_restart(keys, removed=()):
    """True when a change of these keys is not picked up by a reload (SIGHUP).

    A removed key always needs a restart: on reload dockerd only applies the keys present in the file,
    so the value of a deleted one (a reloadable one such as default-runtime included) stays in force.
    """
    return bool(removed) or any(k not in RELOADABLE_KEYS for k in keys)


def render(settings):
    """The canonical file content: sorted keys, two-space indent, trailing newline."""
    return json.dumps(settings, indent=2, sort_keys=True) + "\n"


def parse(text, where="daemon.json"):
    """Parse existing file content. An empty file counts as {}. Raises ValueError with a clear message."""
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError("%s is not valid JSON (%s); fix or remove it by hand" % (where, exc)) from exc
    if not isinstance(data, dict):
        raise ValueError("%s must hold a JSON object, found %s" % (where, _type_name(data)))
    return data


class _Missing(object):
    def __repr__(self):
        return "<missing>"


_MISSING = _Missing()
