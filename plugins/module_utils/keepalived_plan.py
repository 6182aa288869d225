# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check the keepalived role's variables and work out every host's VRRP settings.

Pure Python (stdlib ``ipaddress`` only, no Ansible imports): the filter plugin
``qwen3vl.ha.keepalived_plan`` wraps it and unit tests call it directly.

Input
  ``config``: the role's settings without the ``keepalived_`` prefix (see ``plan``), and
  ``hosts``: one entry per host of the VRRP group, in inventory order::

      {"lb1": {"interface": "eth0",            # keepalived_interface on that host
               "priority": None,               # keepalived_priority on that host (None, int or {instance: int})
               "unicast_address": None,        # keepalived_unicast_address on that host
               "interfaces": {"eth0": {"address": "192.0.2.11", "prefix": 24}},   # IPv4 per NIC (facts)
               "has_facts": True}}

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

PRIORITY_FIRST = 150
PRIORITY_STEP = 10
PRIORITY_MIN = 1
PRIORITY_MAX = 254  # 255 is reserved for the owner of the address (RFC 5798); keepalived then refuses to track
INSTANCE_KEYS = ("name", "vips", "virtual_router_id", "interface", "priority_order", "vip_prefix")
DEFAULT_INSTANCE_NAME = "qwen3vl"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value):
    """A number from an int, a float or a numeric string (Ansible may hand over "0.2"); None otherwise."""
    if _is_number(value):
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


def _instances(config, errors):
    """The instances to run, each with ``where`` (how to name its settings in messages)."""
    given = config.get("instances") or []
    if not isinstance(given, list):
        errors.append("keepalived_instances: must be a list of instances (or [] for one built from keepalived_vip)")
        return []
    if not given:
        vip = config.get("vip")
        return [
            {
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
        ]
    out = []
    for n, entry in enumerate(given):
        where = "keepalived_instances[%d]" % n
        if not isinstance(entry, dict):
            errors.append("%s: must be a mapping with name, vips and virtual_router_id" % where)
            continue
        unknown = sorted(set(entry) - set(INSTANCE_KEYS))
        if unknown:
            errors.append("%s: unknown key(s) %s (known: %s)" % (where, ", ".join(unknown), ", ".join(INSTANCE_KEYS)))
        vips = entry.get("vips")
        if isinstance(vips, str):
            vips = [vips]
        out.append(
            {
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
                    "priority_order": (where + ".priority_order")
                    if entry.get("priority_order")
                    else "keepalived_group",
                    "vip_prefix": (where + ".vip_prefix") if "vip_prefix" in entry else "keepalived_vip_prefix",
                },
            }
        )
    return out


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
        if not _is_int(value) or value < 1:
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
    if not _is_int(number):
        errors.append("%s: %r is not a whole number" % (where, value))
        return False, where
    if not PRIORITY_MIN <= number <= PRIORITY_MAX:
        errors.append("%s: %d is outside %d..%d" % (where, number, PRIORITY_MIN, PRIORITY_MAX))
        return False, where
    return number, where


def plan(config, hosts):
    """Check the settings and return each host's VRRP instances (see the module docstring).

    ``config`` keys: group, group_hosts (inventory order), instances, vip, vip_prefix, virtual_router_id,
    foreign_router_ids, vrrp_version, advert_int, unicast, preempt, preempt_delay, check_interval,
    check_timeout, check_fall, check_rise.
    """
    errors, warnings = [], []
    hosts = hosts or {}
    group = config.get("group") or "lb"
    group_hosts = list(config.get("group_hosts") or [])
    if not group_hosts:
        errors.append("keepalived_group: group %r has no hosts in the inventory" % group)
    elif len(group_hosts) < 2:
        warnings.append(
            "keepalived_group: group %r has only %s; the VIP has no second host to move to (no failover)"
            % (group, group_hosts[0])
        )

    version, advert, delay = _check_timers(config, errors)
    preempt = bool(config.get("preempt", True))
    unicast = bool(config.get("unicast", True))

    foreign = config.get("foreign_router_ids") or []
    if not isinstance(foreign, list) or not all(_is_int(_number(i)) for i in foreign):
        errors.append("keepalived_foreign_router_ids: %r must be a list of numbers 1..255" % (foreign,))
        foreign = []
    foreign = {_number(i) for i in foreign}

    instances = _instances(config, errors)
    seen_names, seen_vrids, seen_vips = {}, {}, {}
    planned = []
    for inst in instances:
        where = inst["where"]
        name = inst["name"]
        if not isinstance(name, str) or not _NAME.match(name):
            errors.append(
                "%s.name: %r must be 1-32 letters, digits, '_', '.' or '-' (it names the instance and its metric file)"
                % (where["self"], name)
            )
            name = None
        elif name in seen_names:
            errors.append("%s.name: %r is already used by %s" % (where["self"], name, seen_names[name]))
        else:
            seen_names[name] = where["self"]

        vrid = _number(inst["virtual_router_id"])
        if not _is_int(vrid) or not 1 <= vrid <= 255:
            errors.append(
                "%s: %r must be a whole number 1..255" % (where["virtual_router_id"], inst["virtual_router_id"])
            )
            vrid = None
        elif vrid in seen_vrids:
            errors.append(
                "%s: %d is already used by %s (one virtual router id per instance on a LAN)"
                % (where["virtual_router_id"], vrid, seen_vrids[vrid])
            )
        elif vrid in foreign:
            errors.append(
                "%s: %d is in keepalived_foreign_router_ids (another VRRP router on this LAN uses it); pick a free id"
                % (where["virtual_router_id"], vrid)
            )
        else:
            seen_vrids[vrid] = where["virtual_router_id"]

        prefix = inst["vip_prefix"]
        if prefix not in (None, ""):
            prefix = _number(prefix)
            if not _is_int(prefix) or not 1 <= prefix <= 32:
                errors.append(
                    "%s: %r must be a prefix length 1..32 (or null for the interface's)"
                    % (where["vip_prefix"], inst["vip_prefix"])
                )
                prefix = None
        else:
            prefix = None

        vips = []
        if inst["vips"] is None:
            errors.append("%s: must be a list of IPv4 addresses" % where["vips"])
        elif not inst["vips"]:
            errors.append(where["vips_empty"])
        for n, text in enumerate(inst["vips"] or []):
            label = where["vips"] if where["vips"] == "keepalived_vip" else "%s[%d]" % (where["vips"], n)
            address = _ipv4(text)
            if address is None:
                errors.append(
                    "%s: %r is not an IPv4 address (write it without a prefix, e.g. 192.0.2.10)" % (label, text)
                )
                continue
            if str(address) in seen_vips:
                errors.append("%s: %s is already a VIP of %s" % (label, address, seen_vips[str(address)]))
                continue
            seen_vips[str(address)] = where["self"]
            vips.append((label, address))

        order = inst["priority_order"]
        if order in (None, "", []):
            order = list(group_hosts)
        elif not isinstance(order, list):
            errors.append("%s: must be a list of host names" % where["priority_order"])
            order = list(group_hosts)
        else:
            unknown = [h for h in order if h not in group_hosts]
            if unknown:
                errors.append(
                    "%s: %s not in group %r (hosts: %s)"
                    % (where["priority_order"], ", ".join(map(str, unknown)), group, ", ".join(group_hosts))
                )
            dupes = sorted({h for h in order if order.count(h) > 1})
            if dupes:
                errors.append("%s: %s listed more than once" % (where["priority_order"], ", ".join(dupes)))
            missing = [h for h in group_hosts if h not in order]
            if missing:
                errors.append(
                    "%s: %s of group %r missing (list every host of the group, most preferred master first)"
                    % (where["priority_order"], ", ".join(missing), group)
                )
            order = [h for n, h in enumerate(order) if h in group_hosts and h not in order[:n]]

        members = []
        by_priority = {}
        for rank, host in enumerate(order):
            data = hosts.get(host) or {}
            interface = inst["interface"] or data.get("interface")
            if not data.get("has_facts"):
                _host_address(host, data, interface, where["interface"], errors)
                continue
            if not interface:
                errors.append(
                    "%s: not set for %s (no default route in its facts?); set it for the host or the instance"
                    % (where["interface"], host)
                )
                continue
            address, network = _host_address(host, data, interface, where["interface"], errors)
            override, prio_where = _priority_override(host, data, name, errors)
            if override is False:
                continue
            if override is None:
                priority = PRIORITY_FIRST - PRIORITY_STEP * rank
                prio_where = "%s (%s is number %d in it)" % (where["priority_order"], host, rank + 1)
                if priority < PRIORITY_MIN:
                    errors.append(
                        "keepalived_priority: %s gets no automatic priority (more than %d hosts); set it for the host"
                        % (host, (PRIORITY_FIRST - PRIORITY_MIN) // PRIORITY_STEP + 1)
                    )
                    continue
            else:
                priority = override
            if priority in by_priority:
                other, other_where = by_priority[priority]
                errors.append(
                    "keepalived_priority: %s and %s both have priority %d in instance %s (from %s and %s); "
                    "priorities of an instance's hosts must differ"
                    % (other, host, priority, name, other_where, prio_where)
                )
            by_priority[priority] = (host, prio_where)
            unicast_text = data.get("unicast_address")
            unicast_address = address
            if unicast_text not in (None, ""):
                unicast_address = _ipv4(unicast_text)
                if unicast_address is None:
                    errors.append("keepalived_unicast_address on %s: %r is not an IPv4 address" % (host, unicast_text))
            if address is None:
                continue
            for label, vip in vips:
                if vip not in network:
                    errors.append(
                        "%s: %s is not in %s's subnet %s on %s (%s); the VIP must be on the VRRP interface's subnet"
                        % (label, vip, host, network, interface, where["interface"])
                    )
                elif vip in (address, unicast_address):
                    errors.append(
                        "%s: %s is %s's own address on %s; the VIP must be a free address"
                        % (label, vip, host, interface)
                    )
                elif network.prefixlen < 31 and vip in (network.network_address, network.broadcast_address):
                    errors.append("%s: %s is the network or broadcast address of %s" % (label, vip, network))
            if prefix is not None and prefix != network.prefixlen:
                warnings.append(
                    "%s: %d differs from %s's prefix /%d on %s; the VIP gets /%d"
                    % (where["vip_prefix"], prefix, host, network.prefixlen, interface, prefix)
                )
            members.append(
                {
                    "host": host,
                    "priority": priority,
                    "interface": interface,
                    "address": str(unicast_address or address),
                    "vips": ["%s/%d" % (vip, prefix if prefix is not None else network.prefixlen) for _l, vip in vips],
                }
            )
        planned.append({"name": name, "virtual_router_id": vrid, "members": members})

    errors = list(dict.fromkeys(errors))  # one message per problem, even when several hosts report it
    warnings = list(dict.fromkeys(warnings))
    if errors:
        return {"errors": errors, "warnings": warnings, "instances": [], "hosts": {}}

    all_start_backup = not preempt or delay > 0
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
            result_hosts[m["host"]]["instances"].append(
                {
                    "name": inst["name"],
                    "virtual_router_id": inst["virtual_router_id"],
                    "state": "MASTER" if (m["host"] == master and not all_start_backup) else "BACKUP",
                    "priority": m["priority"],
                    "interface": m["interface"],
                    "vips": m["vips"],
                    "unicast_src_ip": m["address"] if unicast else None,
                    "unicast_peers": [p["address"] for p in members if p["host"] != m["host"]] if unicast else [],
                }
            )
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
