# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check the keepalived role's variables and work out every host's VRRP settings.

Pure Python (stdlib ``ipaddress`` and the collection's ``checks``, no Ansible imports): the filter plugin
``qwen3vl.ha.keepalived_plan`` wraps it and unit tests call it directly.

Input
  ``config``: the role's settings without the ``keepalived_`` prefix (see ``plan``),
  ``hosts``: one entry per host of the VRRP group, in inventory order::

      {"lb1": {"interface": "eth0",            # keepalived_interface on that host
               "priority": None,               # keepalived_priority on that host (None, int or {instance: int})
               "unicast_address": None,        # keepalived_unicast_address on that host
               "interfaces": {"eth0": {"address": "192.0.2.11", "prefix": 24}},   # IPv4 per NIC (facts)
               "has_facts": True}}

  and ``host``: the host the plan is for (its ``inventory_hostname``), which must be in the group.

Output
  ``{"errors": [...], "warnings": [...], "instances": [...], "hosts": {host: {"instances": [...]}}}``.
  Every message names the variable to change. ``instances`` and ``hosts`` are empty when there are errors.

Priorities: unless a host sets ``keepalived_priority``, the Nth host of an instance's ``priority_order``
(default: the group in inventory order) gets ``150 - 10 * N``: the first host is the preferred master.
Initial state: keepalived only honours ``nopreempt`` and ``preempt_delay`` when no node starts as MASTER,
so the preferred master starts as MASTER only with preemption on and no delay; otherwise all start as BACKUP.
"""

from __future__ import annotations

import ipaddress
import re

from ansible_collections.qwen3vl.ha.plugins.module_utils import checks

PRIORITY_FIRST = 150
PRIORITY_STEP = 10
PRIORITY_MIN = 1
PRIORITY_MAX = 254  # 255 is reserved for the owner of the address (RFC 5798); keepalived then refuses to track
INSTANCE_KEYS = ("name", "vips", "virtual_router_id", "interface", "priority_order", "vip_prefix")
DEFAULT_INSTANCE_NAME = "qwen3vl"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
# the scripts run as this user; keepalived's script security refuses root (and so does the role)
_SCRIPT_USER = re.compile(r"(?!root\Z)[a-z_][a-z0-9_-]{0,31}\Z")
# pidof takes the kernel's process name: at most 15 characters
_PROCESS = re.compile(r"[A-Za-z0-9_.+-]{0,15}\Z")
# the check URL and the textfile directory are written between single quotes into shell scripts
_UNQUOTED = re.compile(r"[^\s\"']*\Z")


def _number(value):
    """A number from an int, a float or a numeric string (Ansible may hand over "0.2"); None otherwise."""
    if checks.is_number(value):
        return value
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            return None
    return None


def _fmt(value):
    """Seconds as keepalived reads them: 1, 0.2, 2.5 (no trailing zeros, no float noise)."""
    text = ("%.3f" % value).rstrip("0").rstrip(".")
    return text or "0"


def _ipv4(text):
    try:
        return ipaddress.IPv4Address(text)
    except (ipaddress.AddressValueError, ValueError, TypeError):
        return None


def _default_instance(config):
    """The one instance built from keepalived_vip when keepalived_instances is empty."""
    vip = config.get("vip")
    return {
        "name": DEFAULT_INSTANCE_NAME,
        "vips": [vip] if vip not in (None, "") else [],
        "virtual_router_id": config.get("virtual_router_id"),
        "interface": None,
        "priority_order": None,
        "vip_prefix": config.get("vip_prefix"),
        "where": {
            "self": "keepalived_vip",
            "vips": "keepalived_vip",
            "vips_empty": (
                "keepalived_vip: empty; set the virtual IPv4 address clients use (e.g. 192.0.2.10), "
                "or list keepalived_instances"
            ),
            "virtual_router_id": "keepalived_virtual_router_id",
            "interface": "keepalived_interface",
            "priority_order": "keepalived_group",
            "vip_prefix": "keepalived_vip_prefix",
        },
    }


def _listed_instance(config, n, entry, errors):
    """Entry ``n`` of keepalived_instances in the shape of ``_default_instance``, or None when unusable."""
    where = "keepalived_instances[%d]" % n
    if not isinstance(entry, dict):
        errors.append("%s: must be a mapping with name, vips and virtual_router_id" % where)
        return None
    unknown = sorted(set(entry) - set(INSTANCE_KEYS))
    if unknown:
        errors.append("%s: unknown key(s) %s (known: %s)" % (where, ", ".join(unknown), ", ".join(INSTANCE_KEYS)))
    vips = entry.get("vips")
    if isinstance(vips, str):
        vips = [vips]
    return {
        "name": entry.get("name"),
        "vips": vips if isinstance(vips, list) else None,
        "virtual_router_id": entry.get("virtual_router_id"),
        "interface": entry.get("interface"),
        "priority_order": entry.get("priority_order"),
        "vip_prefix": entry.get("vip_prefix", config.get("vip_prefix")),
        "where": {
            "self": where,
            "vips": where + ".vips",
            "vips_empty": where + ".vips: list at least one virtual IPv4 address",
            "virtual_router_id": where + ".virtual_router_id",
            "interface": (where + ".interface") if entry.get("interface") else "keepalived_interface",
            "priority_order": (where + ".priority_order") if entry.get("priority_order") else "keepalived_group",
            "vip_prefix": (where + ".vip_prefix") if "vip_prefix" in entry else "keepalived_vip_prefix",
        },
    }


def _instances(config, errors):
    """The instances to run, each with ``where`` (how to name its settings in messages)."""
    given = config.get("instances") or []
    if not isinstance(given, list):
        errors.append("keepalived_instances: must be a list of instances (or [] for one built from keepalived_vip)")
        return []
    if not given:
        return [_default_instance(config)]
    listed = [_listed_instance(config, n, entry, errors) for n, entry in enumerate(given)]
    return [inst for inst in listed if inst is not None]


def _check_timers(config, errors):
    version = _number(config.get("vrrp_version", 3))
    if version not in (2, 3):
        errors.append("keepalived_vrrp_version: %r must be 2 or 3" % (config.get("vrrp_version"),))
        version = 3
    advert = _number(config.get("advert_int"))
    if advert is None or advert <= 0:
        errors.append("keepalived_advert_int: %r is not a positive number of seconds" % (config.get("advert_int"),))
        advert = None
    elif version == 3:
        # VRRPv3 carries the interval in centiseconds in a 12-bit field (RFC 5798 5.2.7)
        centis = advert * 100
        if abs(centis - round(centis)) > 1e-6 or not 1 <= round(centis) <= 4095:
            errors.append(
                "keepalived_advert_int: %s must be between 0.01 and 40.95 seconds in steps of 0.01 with VRRPv3"
                % _fmt(advert)
            )
            advert = None
    elif not (float(advert).is_integer() and 1 <= advert <= 255):
        errors.append(
            "keepalived_advert_int: %s must be whole seconds 1..255 with VRRPv2 "
            "(sub-second intervals need keepalived_vrrp_version: 3)" % _fmt(advert)
        )
        advert = None
    delay = _number(config.get("preempt_delay", 0))
    if delay is None or not 0 <= delay <= 1000:
        errors.append("keepalived_preempt_delay: %r must be 0..1000 seconds" % (config.get("preempt_delay"),))
        delay = 0
    # keepalived 2.2 reads vrrp_script interval and timeout as whole seconds (fractions from 2.3.2 on)
    for key in ("check_interval", "check_timeout", "check_fall", "check_rise"):
        value = config.get(key)
        if not checks.is_int(value) or value < 1:
            errors.append("keepalived_%s: %r must be a whole number >= 1" % (key, value))
    return version, advert, delay


def _host_address(host, data, interface, where_interface, errors):
    """(address, network) of ``host`` on ``interface``, or (None, None) after recording an error."""
    if not data.get("has_facts"):
        errors.append(
            "%s: no facts for this host of the VRRP group (unreachable, or not in this play and not in the "
            "fact cache); its address is needed for unicast peers and the subnet check" % host
        )
        return None, None
    nic = (data.get("interfaces") or {}).get(interface)
    if not nic or not _ipv4(nic.get("address")):
        known = ", ".join(sorted(data.get("interfaces") or {})) or "none"
        errors.append(
            "%s: %s has no interface %r with an IPv4 address (its IPv4 interfaces: %s)"
            % (where_interface, host, interface, known)
        )
        return None, None
    try:
        network = ipaddress.IPv4Network("%s/%s" % (nic["address"], nic.get("prefix")), strict=False)
    except (ValueError, TypeError):
        errors.append(
            "%s: %s reports an unusable prefix %r on %s" % (where_interface, host, nic.get("prefix"), interface)
        )
        return None, None
    return ipaddress.IPv4Address(nic["address"]), network


def _priority_override(host, data, name, errors):
    value = data.get("priority")
    if isinstance(value, dict):
        value = value.get(name)
        where = "keepalived_priority[%r] on %s" % (name, host)
    else:
        where = "keepalived_priority on %s" % host
    if value is None or value == "":
        return None, where
    number = _number(value)
    if not checks.is_int(number):
        errors.append("%s: %r is not a whole number" % (where, value))
        return False, where
    if not PRIORITY_MIN <= number <= PRIORITY_MAX:
        errors.append("%s: %d is outside %d..%d" % (where, number, PRIORITY_MIN, PRIORITY_MAX))
        return False, where
    return number, where


class _Context:
    """What the checks of one ``plan`` call share: the group, the hosts' data, what is taken, the messages."""

    def __init__(self, config, hosts):
        self.group = config.get("group") or "lb"
        self.group_hosts = list(config.get("group_hosts") or [])
        self.hosts = hosts or {}
        self.foreign = set()  # keepalived_foreign_router_ids
        self.names = {}  # instance name -> the instance that has it
        self.vrids = {}  # virtual router id -> where it is set
        self.vips = {}  # VIP -> the instance that has it
        self.errors = []
        self.warnings = []


def _check_group(ctx, host):
    if not ctx.group_hosts:
        ctx.errors.append("keepalived_group: group %r has no hosts in the inventory" % ctx.group)
        return
    if host is not None and host not in ctx.group_hosts:
        ctx.errors.append(
            "keepalived_group: %s is not in group %r (hosts: %s); run the role on that group or set keepalived_group"
            % (host, ctx.group, ", ".join(ctx.group_hosts))
        )
    if len(ctx.group_hosts) < 2:
        ctx.warnings.append(
            "keepalived_group: group %r has only %s; the VIP has no second host to move to (no failover)"
            % (ctx.group, ctx.group_hosts[0])
        )


def _check_scripts(config):
    """Messages about the settings of the check and notify scripts; a setting not in ``config`` is not checked."""
    errors = []
    if "script_user" in config:
        what = "a system user name other than root (scripts must not run as root)"
        checks.add(errors, checks.matches(config["script_user"], "keepalived_script_user", _SCRIPT_USER, what))
    if "textfile_dir" in config:
        value, what = config["textfile_dir"], "an absolute path without spaces or quotes"
        checks.add(
            errors,
            checks.absolute_path(value, "keepalived_textfile_dir", what)
            or checks.matches(value, "keepalived_textfile_dir", _UNQUOTED, what),
        )
    if config.get("check_url", "") != "":
        value, what = config["check_url"], 'an http(s):// URL without quotes, or ""'
        checks.add(
            errors,
            checks.url(value, "keepalived_check_url", what=what)
            or checks.matches(value, "keepalived_check_url", _UNQUOTED, what),
        )
    if "check_process" in config:
        what = 'a process name (pidof; at most 15 characters) or ""'
        checks.add(errors, checks.matches(config["check_process"], "keepalived_check_process", _PROCESS, what))
    return errors + _check_global_defs(config.get("extra_global_defs", []))


def _check_global_defs(lines):
    where = "keepalived_extra_global_defs"
    if not isinstance(lines, list):
        return ["%s: must be a list of global_defs settings, one per item, got %s" % (where, checks.show(lines))]
    return [
        "%s[%d]: one setting per line, without braces: %s" % (where, n, checks.show(line))
        for n, line in enumerate(lines)
        if not isinstance(line, str) or any(c in line for c in "\n\r{}")
    ]


def _foreign_ids(config, errors):
    foreign = config.get("foreign_router_ids") or []
    if not isinstance(foreign, list) or not all(checks.is_int(_number(i)) for i in foreign):
        errors.append("keepalived_foreign_router_ids: %r must be a list of numbers 1..255" % (foreign,))
        return set()
    return {_number(i) for i in foreign}


def _check_name(ctx, inst):
    """The instance's name, or None when it is unusable."""
    where, name = inst["where"]["self"], inst["name"]
    if not isinstance(name, str) or not _NAME.match(name):
        ctx.errors.append(
            "%s.name: %r must be 1-32 letters, digits, '_', '.' or '-' (it names the instance and its metric file)"
            % (where, name)
        )
        return None
    if name in ctx.names:
        ctx.errors.append("%s.name: %r is already used by %s" % (where, name, ctx.names[name]))
    else:
        ctx.names[name] = where
    return name


def _check_vrid(ctx, inst):
    """The instance's virtual router id, or None when it is unusable."""
    where, given = inst["where"]["virtual_router_id"], inst["virtual_router_id"]
    vrid = _number(given)
    if not checks.is_int(vrid) or not 1 <= vrid <= 255:
        ctx.errors.append("%s: %r must be a whole number 1..255" % (where, given))
        return None
    if vrid in ctx.vrids:
        ctx.errors.append(
            "%s: %d is already used by %s (one virtual router id per instance on a LAN)"
            % (where, vrid, ctx.vrids[vrid])
        )
    elif vrid in ctx.foreign:
        ctx.errors.append(
            "%s: %d is in keepalived_foreign_router_ids (another VRRP router on this LAN uses it); pick a free id"
            % (where, vrid)
        )
    else:
        ctx.vrids[vrid] = where
    return vrid


def _check_prefix(ctx, inst):
    """The VIPs' prefix length, or None for the interface's."""
    given = inst["vip_prefix"]
    if given in (None, ""):
        return None
    prefix = _number(given)
    if not checks.is_int(prefix) or not 1 <= prefix <= 32:
        ctx.errors.append(
            "%s: %r must be a prefix length 1..32 (or null for the interface's)" % (inst["where"]["vip_prefix"], given)
        )
        return None
    return prefix


def _check_vips(ctx, inst):
    """[(label, IPv4Address)] of the instance's usable VIPs."""
    where = inst["where"]
    if inst["vips"] is None:
        ctx.errors.append("%s: must be a list of IPv4 addresses" % where["vips"])
    elif not inst["vips"]:
        ctx.errors.append(where["vips_empty"])
    vips = []
    for n, text in enumerate(inst["vips"] or []):
        label = where["vips"] if where["vips"] == "keepalived_vip" else "%s[%d]" % (where["vips"], n)
        address = _ipv4(text)
        if address is None:
            ctx.errors.append(
                "%s: %r is not an IPv4 address (write it without a prefix, e.g. 192.0.2.10)" % (label, text)
            )
        elif str(address) in ctx.vips:
            ctx.errors.append("%s: %s is already a VIP of %s" % (label, address, ctx.vips[str(address)]))
        else:
            ctx.vips[str(address)] = where["self"]
            vips.append((label, address))
    return vips


def _priority_order(ctx, inst):
    """The instance's hosts, most preferred master first (each group host once, unknown ones dropped)."""
    order, where, group_hosts = inst["priority_order"], inst["where"]["priority_order"], ctx.group_hosts
    if order in (None, "", []):
        return list(group_hosts)
    if not isinstance(order, list):
        ctx.errors.append("%s: must be a list of host names" % where)
        return list(group_hosts)
    unknown = [h for h in order if h not in group_hosts]
    if unknown:
        ctx.errors.append(
            "%s: %s not in group %r (hosts: %s)"
            % (where, ", ".join(map(str, unknown)), ctx.group, ", ".join(group_hosts))
        )
    dupes = sorted({h for h in order if order.count(h) > 1})
    if dupes:
        ctx.errors.append("%s: %s listed more than once" % (where, ", ".join(dupes)))
    missing = [h for h in group_hosts if h not in order]
    if missing:
        ctx.errors.append(
            "%s: %s of group %r missing (list every host of the group, most preferred master first)"
            % (where, ", ".join(missing), ctx.group)
        )
    return [h for n, h in enumerate(order) if h in group_hosts and h not in order[:n]]


def _priority(ctx, inst, checked, host, rank):
    """The host's priority in the instance (its override or the automatic one), or None after an error.
    ``checked["by_priority"]`` ({priority: (host, where it comes from)}) collects the instance's priorities."""
    name, by_priority = checked["name"], checked["by_priority"]
    override, where = _priority_override(host, ctx.hosts.get(host) or {}, name, ctx.errors)
    if override is False:
        return None
    if override is None:
        priority = PRIORITY_FIRST - PRIORITY_STEP * rank
        where = "%s (%s is number %d in it)" % (inst["where"]["priority_order"], host, rank + 1)
        if priority < PRIORITY_MIN:
            ctx.errors.append(
                "keepalived_priority: %s gets no automatic priority (more than %d hosts); set it for the host"
                % (host, (PRIORITY_FIRST - PRIORITY_MIN) // PRIORITY_STEP + 1)
            )
            return None
    else:
        priority = override
    if priority in by_priority:
        other, other_where = by_priority[priority]
        ctx.errors.append(
            "keepalived_priority: %s and %s both have priority %d in instance %s (from %s and %s); "
            "priorities of an instance's hosts must differ" % (other, host, priority, name, other_where, where)
        )
    by_priority[priority] = (host, where)
    return priority


def _unicast_address(ctx, host, address):
    """The address the host sends adverts from: keepalived_unicast_address when set (None if unusable),
    else ``address``."""
    text = (ctx.hosts.get(host) or {}).get("unicast_address")
    if text in (None, ""):
        return address
    unicast = _ipv4(text)
    if unicast is None:
        ctx.errors.append("keepalived_unicast_address on %s: %r is not an IPv4 address" % (host, text))
    return unicast


def _check_vips_on_subnet(ctx, vips, host, *, interface, where, own, network):
    """Every VIP must be a free address (not one of ``own``) of the host's subnet on the VRRP interface."""
    for label, vip in vips:
        if vip not in network:
            ctx.errors.append(
                "%s: %s is not in %s's subnet %s on %s (%s); the VIP must be on the VRRP interface's subnet"
                % (label, vip, host, network, interface, where)
            )
        elif vip in own:
            ctx.errors.append(
                "%s: %s is %s's own address on %s; the VIP must be a free address" % (label, vip, host, interface)
            )
        elif network.prefixlen < 31 and vip in (network.network_address, network.broadcast_address):
            ctx.errors.append("%s: %s is the network or broadcast address of %s" % (label, vip, network))


def _member(ctx, inst, checked, host, rank):
    """One host's part in an instance ({host, priority, interface, address, vips}), or None after an error.
    ``checked``: the instance's name, vips and prefix as the instance-wide checks left them, and by_priority."""
    vips, prefix = checked["vips"], checked["prefix"]
    where = inst["where"]["interface"]
    data = ctx.hosts.get(host) or {}
    interface = inst["interface"] or data.get("interface")
    if not data.get("has_facts"):
        _host_address(host, data, interface, where, ctx.errors)
        return None
    if not interface:
        ctx.errors.append(
            "%s: not set for %s (no default route in its facts?); set it for the host or the instance" % (where, host)
        )
        return None
    address, network = _host_address(host, data, interface, where, ctx.errors)
    priority = _priority(ctx, inst, checked, host, rank)
    if priority is None:
        return None
    unicast_address = _unicast_address(ctx, host, address)
    if address is None:
        return None
    own = (address, unicast_address)
    _check_vips_on_subnet(ctx, vips, host, interface=interface, where=where, own=own, network=network)
    if prefix is not None and prefix != network.prefixlen:
        ctx.warnings.append(
            "%s: %d differs from %s's prefix /%d on %s; the VIP gets /%d"
            % (inst["where"]["vip_prefix"], prefix, host, network.prefixlen, interface, prefix)
        )
    length = prefix if prefix is not None else network.prefixlen
    return {
        "host": host,
        "priority": priority,
        "interface": interface,
        "address": str(unicast_address or address),
        "vips": ["%s/%d" % (vip, length) for _label, vip in vips],
    }


def _plan_instance(ctx, inst):
    """{name, virtual_router_id, members} of one instance, after checking it and each of its hosts."""
    name = _check_name(ctx, inst)
    vrid = _check_vrid(ctx, inst)
    prefix = _check_prefix(ctx, inst)
    checked = {"name": name, "vips": _check_vips(ctx, inst), "prefix": prefix, "by_priority": {}}
    members = []
    for rank, host in enumerate(_priority_order(ctx, inst)):
        member = _member(ctx, inst, checked, host, rank)
        if member is not None:
            members.append(member)
    return {"name": name, "virtual_router_id": vrid, "members": members}


def _host_instance(inst, members, member, start_master, unicast):
    """One entry of ``hosts[host]["instances"]``: what the host's keepalived.conf says about the instance."""
    return {
        "name": inst["name"],
        "virtual_router_id": inst["virtual_router_id"],
        "state": "MASTER" if start_master else "BACKUP",
        "priority": member["priority"],
        "interface": member["interface"],
        "vips": member["vips"],
        "unicast_src_ip": member["address"] if unicast else None,
        "unicast_peers": [p["address"] for p in members if p["host"] != member["host"]] if unicast else [],
    }


def _result(config, planned, group_hosts, warnings, timers):
    """The plan of checked settings: the instances' summary and each host's instances."""
    version, advert, delay = timers
    unicast = bool(config.get("unicast", True))
    all_start_backup = not config.get("preempt", True) or delay > 0
    result_hosts = {h: {"instances": []} for h in group_hosts}
    summary = []
    for inst in planned:
        members = sorted(inst["members"], key=lambda m: -m["priority"])
        master = members[0]["host"] if members else None
        summary.append(
            {
                "name": inst["name"],
                "virtual_router_id": inst["virtual_router_id"],
                "vips": members[0]["vips"] if members else [],
                "preferred_master": master,
                "priorities": {m["host"]: m["priority"] for m in members},
            }
        )
        for m in members:
            start_master = m["host"] == master and not all_start_backup
            result_hosts[m["host"]]["instances"].append(_host_instance(inst, members, m, start_master, unicast))
    return {
        "errors": [],
        "warnings": warnings,
        "instances": summary,
        "hosts": result_hosts,
        "advert_int": _fmt(advert),
        # keepalived raises its own scheduling priority when it runs this late after a timer (half an advert)
        "auto_priority_delay_us": int(round(advert * 1000000 / 2)),
        "preempt_delay": _fmt(delay),
        "vrrp_version": version,
    }


def plan(config, hosts, host=None):
    """Check the settings and return each host's VRRP instances (see the module docstring).

    ``config`` keys: group, group_hosts (inventory order), instances, vip, vip_prefix, virtual_router_id,
    foreign_router_ids, vrrp_version, advert_int, unicast, preempt, preempt_delay, check_interval,
    check_timeout, check_fall, check_rise; and, checked when present: script_user, textfile_dir, check_url,
    check_process, extra_global_defs. ``host``: the host the plan is for (None: not checked).
    """
    ctx = _Context(config, hosts)
    _check_group(ctx, host)
    ctx.errors += _check_scripts(config)
    timers = _check_timers(config, ctx.errors)
    ctx.foreign = _foreign_ids(config, ctx.errors)
    planned = [_plan_instance(ctx, inst) for inst in _instances(config, ctx.errors)]
    errors = list(dict.fromkeys(ctx.errors))  # one message per problem, even when several hosts report it
    warnings = list(dict.fromkeys(ctx.warnings))
    if errors:
        return {"errors": errors, "warnings": warnings, "instances": [], "hosts": {}}
    return _result(config, planned, ctx.group_hosts, warnings, timers)


def host_view(facts, interface=None, priority=None, unicast_address=None):
    """The per-host entry ``plan`` reads, from a host's Ansible facts and its role settings."""
    facts = facts if isinstance(facts, dict) else {}
    interfaces = {}
    for name in facts.get("interfaces") or []:
        nic = facts.get(name.replace("-", "_").replace(":", "_")) or facts.get(name) or {}
        ipv4 = nic.get("ipv4") if isinstance(nic, dict) else None
        if isinstance(ipv4, dict) and ipv4.get("address"):
            interfaces[name] = {"address": ipv4.get("address"), "prefix": ipv4.get("prefix")}
    if not interface:
        interface = (facts.get("default_ipv4") or {}).get("interface")
    return {
        "interface": interface,
        "priority": priority,
        "unicast_address": unicast_address,
        "interfaces": interfaces,
        "has_facts": bool(facts.get("interfaces")),
    }
