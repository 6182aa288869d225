# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check the nfs_server and nfs_client roles' variables and work out what they write.

Pure Python (stdlib and the collection's ``checks``, no Ansible imports): the filter plugins
``qwen3vl.ha.nfs_server_plan``, ``qwen3vl.ha.nfs_client_plan`` and ``qwen3vl.ha.nfs_client_mountpoint_errors``
wrap it and unit tests call it directly.

Server: ``server_plan(exports, implementation=..., versions=..., allow_any_client=..., grace_period=...,
lease_time=...)`` returns ``{"errors": [...], "warnings": [...], "exports": [...]}``. Each export comes back
with every default filled in, its kernel exports(5) line (``kernel_line``) and its NFS-Ganesha export id
(``export_id``). Every message names the variable to change; ``exports`` is empty when there are errors.

Client: ``client_plan(mounts, settings, fstab_text=...)`` returns ``{"errors": [...], "warnings": [],
"mounts": [...]}``, one entry per mount with ``src`` and the exact fstab options string (``opts``).
``mountpoint_errors(mounts, stats, contents, allow_nonempty)`` judges the host's mount points (what the
role's tasks found there) for those mounts.

Ganesha export ids are part of every file handle it hands out, so an id must not change when the list
is reordered: it is derived from the pseudo path (crc32), unless the export sets ``export_id``.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
import zlib

try:
    from ansible_collections.qwen3vl.ha.plugins.module_utils import checks
except ImportError:  # loaded by file path, outside the collection (tests/vm/test_nfs_boot.py): the sibling file
    import importlib.util as _util

    _spec = _util.spec_from_file_location("checks", posixpath.join(posixpath.dirname(__file__), "checks.py"))
    checks = _util.module_from_spec(_spec)
    _spec.loader.exec_module(checks)

IMPLEMENTATIONS = ("kernel", "ganesha")
ACCESS = ("rw", "ro")
SQUASH = ("root_squash", "no_root_squash", "all_squash")
SEC = ("sys", "krb5", "krb5i", "krb5p")
EXPORT_KEYS = (
    "path",
    "pseudo",
    "clients",
    "access",
    "squash",
    "sec",
    "anonuid",
    "anongid",
    "options",
    "owner",
    "group",
    "mode",
    "export_id",
    "privileged_port",
)
# exports(5) options a user may add through `options`; the ones the role sets from its own keys are in
# MANAGED_OPTIONS and are refused there, naming the key to use instead.
KERNEL_FLAGS = frozenset(
    {
        "secure",
        "insecure",
        "async",
        "sync",
        "wdelay",
        "no_wdelay",
        "hide",
        "nohide",
        "crossmnt",
        "subtree_check",
        "no_subtree_check",
        "secure_locks",
        "insecure_locks",
        "auth_nlm",
        "no_auth_nlm",
        "no_acl",
        "nordirplus",
        "pnfs",
        "no_pnfs",
        "security_label",
        "mountpoint",
        "mp",
    }
)
KERNEL_VALUED = frozenset({"fsid", "mountpoint", "mp", "refer", "replicas", "xprtsec"})
MANAGED_OPTIONS = {
    "rw": "access",
    "ro": "access",
    "root_squash": "squash",
    "no_root_squash": "squash",
    "all_squash": "squash",
    "no_all_squash": "squash",
    "sec": "sec",
    "anonuid": "anonuid",
    "anongid": "anongid",
    "secure": "privileged_port",
    "insecure": "privileged_port",
}
DEFAULT_EXPORT_OPTIONS = ("sync", "no_subtree_check")
WORLD_CLIENTS = frozenset({"*", "0.0.0.0/0", "::/0"})
ANON_ID = 65534
ID_MAX = 4294967294
GANESHA_ID_MAX = 65535
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9*?]([A-Za-z0-9*?-]{0,62})(\.[A-Za-z0-9*?]([A-Za-z0-9*?-]{0,62}))*$")
_NETGROUP = re.compile(r"^@[A-Za-z0-9_.-]{1,64}$")
# a path goes unquoted into exports(5) and ganesha.conf: no white space, quotes, braces or semicolons
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._@+/-]*$")
_USER = re.compile(r"^([a-z_][a-z0-9_-]{0,31}|[0-9]{1,10})$")
_MODE = re.compile(r"^0?[0-7]{3,4}$")
# directories that are never exported, whatever the request
_SYSTEM_DIRS = ("/proc", "/sys", "/dev", "/run", "/boot", "/etc")


def _normal_path(value):
    """The normalised absolute path, or None when ``value`` is not a clean absolute path."""
    if not isinstance(value, str) or not value.startswith("/") or not _SAFE_PATH.match(value):
        return None
    normal = posixpath.normpath(value)
    if normal.startswith("//"):
        normal = "/" + normal.lstrip("/")
    return normal


def _client_error(client, where, allow_any_client):
    """One problem with a client entry, or None."""
    if not isinstance(client, str) or not client.strip():
        return f"{where}: a client must be a host name, an address or a network, got {client!r}"
    client = client.strip()
    problem = None
    if client in WORLD_CLIENTS:
        if not allow_any_client:
            problem = (
                f"{where}: {client!r} lets every host on every network mount this export; list the hosts or "
                "subnets that need it, or set nfs_server_allow_any_client: true"
            )
    elif "/" in client or ":" in client or client.replace(".", "").isdigit():
        try:
            network = ipaddress.ip_network(client, strict=False)
        except ValueError:
            problem = f"{where}: {client!r} is not a valid address or network (CIDR)"
        else:
            if network.prefixlen == 0 and not allow_any_client:
                problem = (
                    f"{where}: {client!r} is every address; set nfs_server_allow_any_client: true if that is meant"
                )
    elif not (_NETGROUP.match(client) or _HOSTNAME.match(client)):
        problem = f"{where}: {client!r} is not a host name, address, network or @netgroup"
    elif client.strip("*?.") == "":
        problem = f"{where}: {client!r} matches every host; list hosts or subnets instead"
    return problem


def _nested(paths):
    """(inner, outer) for every path of ``paths`` that lies below another one."""
    return [(inner, outer) for outer in paths for inner in paths if inner.startswith(outer + "/")]


def _export_id(pseudo):
    """A stable Ganesha export id (1..65535, 0 is the pseudo root) from the pseudo path."""
    return zlib.crc32(pseudo.encode("utf-8")) % (GANESHA_ID_MAX - 1) + 1


def _check_options(options, where):
    errors = []
    if not isinstance(options, list):
        return [f"{where}.options: must be a list of exports(5) options, got {options!r}"]
    for option in options:
        if not isinstance(option, str) or not option or not re.match(r"^[A-Za-z0-9_=.:/@-]+$", option):
            errors.append(f"{where}.options: {option!r} is not an exports(5) option")
            continue
        name, _sep, value = option.partition("=")
        if name in MANAGED_OPTIONS:
            errors.append(f"{where}.options: {option!r} is set through the export's {MANAGED_OPTIONS[name]!r} key")
        elif _sep and name not in KERNEL_VALUED:
            errors.append(f"{where}.options: {name!r} does not take a value (exports(5))")
        elif _sep and not value:
            errors.append(f"{where}.options: {option!r} needs a value")
        elif not _sep and name not in KERNEL_FLAGS:
            errors.append(
                f"{where}.options: {option!r} is not an option exports(5) knows "
                f"(known: {', '.join(sorted(KERNEL_FLAGS | {k + '=' for k in KERNEL_VALUED}))})"
            )
    return errors


def _one_export(index, export, allow_any_client):
    """(errors, normalised export) for one entry of nfs_server_exports."""
    where = f"nfs_server_exports[{index}]"
    if not isinstance(export, dict):
        return [f"{where}: each export must be a mapping with at least path and clients"], None
    errors = checks.add([], checks.unknown_keys(export, where, EXPORT_KEYS))
    path = _normal_path(export.get("path"))
    if path is None:
        errors.append(
            f"{where}.path: {export.get('path')!r} must be an absolute path of letters, digits and ._@+- "
            "(no spaces or quotes)"
        )
    elif path == "/":
        errors.append(
            f"{where}.path: exporting / would hand the whole server's file system to the clients; export a directory"
        )
    elif any(path == d or path.startswith(d + "/") for d in _SYSTEM_DIRS):
        errors.append(f"{where}.path: {path} is a system directory; export a data directory instead")
    pseudo_raw = export.get("pseudo", export.get("path"))
    pseudo = _normal_path(pseudo_raw)
    if (pseudo is None or pseudo == "/") and "pseudo" in export:
        errors.append(f"{where}.pseudo: {pseudo_raw!r} must be an absolute path other than / (the NFSv4 pseudo root)")
    clients = export.get("clients")
    if not isinstance(clients, list) or not clients:
        errors.append(f"{where}.clients: list the hosts or subnets that may mount {export.get('path')!r}")
        clients = []
    for number, client in enumerate(clients):
        problem = _client_error(client, f"{where}.clients[{number}]", allow_any_client)
        if problem:
            errors.append(problem)
    access = export.get("access", "rw")
    squash = export.get("squash", "root_squash")
    checks.add(
        errors, checks.one_of(access, f"{where}.access", ACCESS), checks.one_of(squash, f"{where}.squash", SQUASH)
    )
    sec = export.get("sec", ["sys"])
    if isinstance(sec, str):
        sec = [sec]
    if not isinstance(sec, list) or not sec or any(flavour not in SEC for flavour in sec):
        errors.append(f"{where}.sec: {export.get('sec')!r} must be a list of {', '.join(SEC)}")
    anon = {key: export.get(key, ANON_ID) for key in ("anonuid", "anongid")}
    checks.add(errors, *(checks.integer(anon[key], f"{where}.{key}", 0, ID_MAX) for key in anon))
    options = export.get("options", list(DEFAULT_EXPORT_OPTIONS))
    errors += _check_options(options, where)
    owner = str(export.get("owner", "root"))
    group = str(export.get("group", "root"))
    for key, value in (("owner", owner), ("group", group)):
        if not _USER.match(value):
            errors.append(f"{where}.{key}: {value!r} must be a user/group name or a number")
    mode = str(export.get("mode", "0755"))
    if not _MODE.match(mode):
        errors.append(f"{where}.mode: {mode!r} must be an octal mode such as '0755'")
    privileged = export.get("privileged_port", True)
    if not isinstance(privileged, bool):
        errors.append(f"{where}.privileged_port: {privileged!r} must be true or false")
    export_id = export.get("export_id")
    if export_id is not None:
        checks.add(errors, checks.integer(export_id, f"{where}.export_id", 1, GANESHA_ID_MAX))
    if errors:
        return errors, None
    clients = [client.strip() for client in clients]
    kernel_options = [
        access,
        squash,
        "sec=" + ":".join(sec),
        f"anonuid={anon['anonuid']}",
        f"anongid={anon['anongid']}",
        "secure" if privileged else "insecure",
    ]
    kernel_options += [option for option in options if option not in kernel_options]
    if "subtree_check" not in options and "no_subtree_check" not in options:
        kernel_options.append("no_subtree_check")  # exportfs warns when neither is given
    kernel_line = path + " " + " ".join(f"{client}({','.join(kernel_options)})" for client in clients)
    return [], {
        "path": path,
        "pseudo": pseudo,
        "clients": clients,
        "access": access,
        "squash": squash,
        "sec": list(sec),
        "anonuid": anon["anonuid"],
        "anongid": anon["anongid"],
        "privileged_port": privileged,
        "options": list(options),
        "owner": owner,
        "group": group,
        "mode": mode if len(mode) == 4 else "0" + mode,
        "export_id": export_id if export_id is not None else _export_id(pseudo),
        "kernel_line": kernel_line,
    }


def _timer_errors(grace_period, lease_time):
    """NFSv4 clients reclaim their state within the grace period; it must last at least one lease."""
    if not (checks.is_int(grace_period) and checks.is_int(lease_time)) or grace_period >= lease_time:
        return []
    return [
        f"nfs_server_grace_period: {grace_period} is shorter than nfs_server_lease_time ({lease_time}); "
        "clients could not reclaim their state"
    ]


def server_plan(
    exports, *, implementation="kernel", versions=(4,), allow_any_client=False, grace_period=None, lease_time=None
):
    """Check nfs_server_* settings; return {"errors": [...], "warnings": [...], "exports": [...]} (exports empty
    on errors). ``grace_period`` and ``lease_time`` (seconds) are compared when both are given."""
    errors = checks.add([], checks.one_of(implementation, "nfs_server_implementation", IMPLEMENTATIONS))
    if (
        not isinstance(versions, (list, tuple))
        or not versions
        or any(v not in (3, 4) for v in versions)
        or len(set(versions)) != len(versions)
    ):
        errors.append(f"nfs_server_nfs_versions: {versions!r} must be [4], [3, 4] or [3]")
    errors += _timer_errors(grace_period, lease_time)
    if not isinstance(exports, list):
        return {"errors": errors + ["nfs_server_exports: must be a list of exports"], "warnings": [], "exports": []}
    warnings = [] if exports else ["nfs_server_exports: empty; the server will export nothing"]
    planned = []
    for index, export in enumerate(exports):
        export_errors, entry = _one_export(index, export, allow_any_client)
        errors += export_errors
        if entry:
            planned.append(entry)
    # two exports sharing a pseudo path share its derived id too: that id clash is not reported twice
    pseudo_shared = len({entry["pseudo"] for entry in planned}) < len(planned)
    for key in ("path", "pseudo") if pseudo_shared else ("path", "pseudo", "export_id"):
        seen = {}
        for entry in planned:
            if entry[key] in seen:
                extra = " (two pseudo paths share a derived id: set export_id on one)" if key == "export_id" else ""
                errors.append(
                    f"nfs_server_exports: {key} {entry[key]!r} is used by {seen[entry[key]]} and {entry['path']}{extra}"
                )
            seen[entry[key]] = entry["path"]
    for inner, outer in _nested(sorted(entry["path"] for entry in planned)):
        errors.append(
            f"nfs_server_exports: {inner} is inside the export {outer}; nested exports share file handles "
            "and squash settings in surprising ways, export sibling directories"
        )
    return {"errors": errors, "warnings": warnings, "exports": [] if errors else planned}


# --- client ------------------------------------------------------------------------------------------

MOUNT_KEYS = ("server", "export", "path", "options", "owner", "group", "mode")
BOOT_MODES = ("nofail", "automount")
MOUNT_STATES = ("mounted", "present")
NFS_VERSIONS = ("4", "4.0", "4.1", "4.2", "3")
# options the role composes from its own settings; `options` (extra) must not repeat them
CLIENT_MANAGED = {
    "nfsvers": "nfs_client_nfs_version",
    "vers": "nfs_client_nfs_version",
    "hard": "nfs_client_hard",
    "soft": "nfs_client_hard",
    "softerr": "nfs_client_hard",
    "timeo": "nfs_client_timeo",
    "retrans": "nfs_client_retrans",
    "_netdev": "(always set)",
    "nofail": "nfs_client_boot_mode",
    "x-systemd.automount": "nfs_client_boot_mode",
    "x-systemd.mount-timeout": "nfs_client_mount_timeout",
    "x-systemd.idle-timeout": "nfs_client_idle_timeout",
    "proto": "(always tcp)",
    "nosuid": "(always set)",
    "nodev": "(always set)",
    "suid": "(always nosuid)",
    "dev": "(always nodev)",
}
_OPTION = re.compile(r"^[A-Za-z0-9_.-]+(=[A-Za-z0-9_.:/-]+)?$")
_SERVER = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*|\[[0-9A-Fa-f:.]+\])$")


def _fstab_entries(fstab_text):
    """{mount point: (device, options)} from /etc/fstab text (comments and blank lines skipped)."""
    entries = {}
    for line in (fstab_text or "").splitlines():
        fields = line.split()
        if len(fields) >= 4 and not fields[0].startswith("#"):
            entries[fields[1]] = (fields[0], fields[3])
    return entries


def client_options(settings):
    """The role's own options, in the order they are written: version, hard/soft, timers, boot behaviour."""
    options = [
        f"nfsvers={settings.get('nfs_version', '4.1')}",
        "proto=tcp",
        "hard" if settings.get("hard", True) else "soft",
        # the shares hold model files and session data: no setuid programs, no device files
        "nosuid",
        "nodev",
        f"timeo={settings.get('timeo', 600)}",
        f"retrans={settings.get('retrans', 2)}",
        "_netdev",
    ]
    if settings.get("boot_mode", "nofail") == "automount":
        options += ["x-systemd.automount", f"x-systemd.idle-timeout={settings.get('idle_timeout', 600)}"]
    else:
        options.append("nofail")
    options.append(f"x-systemd.mount-timeout={settings.get('mount_timeout', 30)}")
    return options


def _client_settings_errors(settings):
    errors = []
    if str(settings.get("nfs_version", "4.1")) not in NFS_VERSIONS:
        errors.append(
            f"nfs_client_nfs_version: {settings.get('nfs_version')!r} must be one of {', '.join(NFS_VERSIONS)}"
        )
    if settings.get("boot_mode", "nofail") not in BOOT_MODES:
        errors.append(
            f"nfs_client_boot_mode: {settings.get('boot_mode')!r} must be nofail or automount "
            "(either keeps a missing server from blocking boot)"
        )
    for key, low, high in (
        ("timeo", 1, 6000),
        ("retrans", 0, 100),
        ("mount_timeout", 1, 3600),
        ("idle_timeout", 0, 86400),
    ):
        checks.add(errors, checks.integer(settings.get(key, 1), f"nfs_client_{key}", low, high))
    checks.add(errors, checks.one_of(settings.get("state", "mounted"), "nfs_client_mount_state", MOUNT_STATES))
    return errors


def _one_mount(index, mount, settings):
    where = f"nfs_client_mounts[{index}]"
    if not isinstance(mount, dict):
        return [f"{where}: each mount must be a mapping with server, export and path"], None
    errors = checks.add([], checks.unknown_keys(mount, where, MOUNT_KEYS))
    server = mount.get("server")
    if not isinstance(server, str) or not server:
        errors.append(f"{where}.server: name or address of the NFS server, got {server!r}")
    else:
        try:
            address = ipaddress.ip_address(server)
            if address.version == 6:
                server = f"[{server}]"
        except ValueError:
            if not _SERVER.match(server):
                errors.append(f"{where}.server: {server!r} is not a host name or address")
    export = _normal_path(mount.get("export"))
    if export is None:
        errors.append(f"{where}.export: {mount.get('export')!r} must be the absolute path the server exports")
    path = _normal_path(mount.get("path"))
    if path is None or path == "/":
        errors.append(f"{where}.path: {mount.get('path')!r} must be an absolute mount point other than /")
    extra = mount.get("options", settings.get("extra_options", []))
    if not isinstance(extra, list):
        errors.append(f"{where}.options: must be a list of mount options, got {extra!r}")
        extra = []
    for option in extra:
        if not isinstance(option, str) or not _OPTION.match(option):
            errors.append(f"{where}.options: {option!r} is not a mount option")
            continue
        name = option.partition("=")[0]
        if name in CLIENT_MANAGED:
            errors.append(f"{where}.options: {option!r} is set by the role ({CLIENT_MANAGED[name]})")
    for key in ("owner", "group"):
        if key in mount and not _USER.match(str(mount[key])):
            errors.append(f"{where}.{key}: {mount[key]!r} must be a user/group name or a number")
    if "mode" in mount and not _MODE.match(str(mount["mode"])):
        errors.append(f"{where}.mode: {mount['mode']!r} must be an octal mode such as '0755'")
    if errors:
        return errors, None
    return [], {
        "server": server,
        "export": export,
        "path": path,
        "src": f"{server}:{export}",
        "opts": ",".join(client_options(settings) + extra),
        "owner": str(mount.get("owner", "root")),
        "group": str(mount.get("group", "root")),
        "mode": str(mount.get("mode", "0755")),
    }


def client_plan(mounts, settings, *, fstab_text=""):
    """Check nfs_client_* settings; return {"errors": [...], "warnings": [], "mounts": [...]} (mounts empty on
    errors).

    ``settings``: the role's settings without the ``nfs_client_`` prefix (nfs_version, hard, timeo,
    retrans, boot_mode, mount_timeout, idle_timeout, extra_options, state). Each mount gets
    ``fstab_ours``: whether /etc/fstab already has this source on this mount point (the role put it
    there, so a non-empty directory there is the share's own data, not something the mount would hide).
    """
    errors = _client_settings_errors(settings)
    if not isinstance(mounts, list):
        return {"errors": errors + ["nfs_client_mounts: must be a list of mounts"], "warnings": [], "mounts": []}
    fstab = _fstab_entries(fstab_text)
    planned = []
    for index, mount in enumerate(mounts):
        mount_errors, entry = _one_mount(index, mount, settings)
        errors += mount_errors
        if entry:
            entry["fstab_ours"] = fstab.get(entry["path"], ("", ""))[0] == entry["src"]
            planned.append(entry)
    seen = {}
    for entry in planned:
        if entry["path"] in seen:
            errors.append(f"nfs_client_mounts: two mounts use the mount point {entry['path']}")
        seen[entry["path"]] = True
    for inner, outer in _nested([entry["path"] for entry in planned]):
        errors.append(f"nfs_client_mounts: {inner} is inside the mount point {outer}; use sibling mount points")
    return {"errors": errors, "warnings": [], "mounts": [] if errors else planned}


def mountpoint_errors(mounts, stats, contents, allow_nonempty=False):
    """Messages about mount points the mounts cannot use, judged from what the role's tasks found on the host.

    ``mounts``: the plan's mounts (their index is the one in nfs_client_mounts: the plan has mounts only when
    every entry is valid). Per mount, in the same order (lists of another length raise ValueError): ``stats``,
    the stat of its path (``exists``, ``isdir``, ``isreg``; missing keys count as false), and ``contents``, the
    first entry found in the directory ("" when it is empty, not a directory or something is mounted there).
    A mount point that does not exist yet is fine (the mount creates it); one that is not a directory is
    refused; a non-empty one is refused unless the role wrote its fstab entry (``fstab_ours``: the content is
    the share's) or ``allow_nonempty``.
    """
    errors = []
    for index, (mount, found, first) in enumerate(zip(mounts, stats, contents, strict=True)):
        where = f"nfs_client_mounts[{index}].path"
        stat, content = found or {}, (first or "").strip()
        if stat.get("exists") and not stat.get("isdir"):
            kind = "a file" if stat.get("isreg") else "a link or special file"
            errors.append(
                f"{where}: {mount['path']} exists and is not a directory ({kind}); a mount point must be a directory"
            )
        elif content and not mount.get("fstab_ours") and not allow_nonempty:
            errors.append(
                f"{where}: {mount['path']} is not empty (it holds {content}); mounting {mount['src']} there would "
                "hide its content. Move it away, or set nfs_client_allow_nonempty: true"
            )
    return errors
