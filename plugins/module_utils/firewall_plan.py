# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The firewall role's plan: who may reach which port of a host, worked out from the inventory.

Pure Python (no Ansible imports): the filter ``qwen3vl.ha.firewall_plan`` wraps it and unit tests call it
directly. Calling convention (see checks.py)::

    _firewall_config | qwen3vl.ha.firewall_plan(inventory_hostname, groups, hostvars)

The filter reads from ``hostvars`` only the address variables of the hosts in the groups that this host's
rules name (``peers`` below), so a host the rules do not need is never templated.

What a host accepts depends on its groups (the names come from ``firewall_groups``):

- every host: SSH from ``firewall_admin_sources``; node_exporter from the monitoring hosts;
- lb: the front door's HTTP and HTTPS ports from ``firewall_client_sources``; VRRP only from the lb hosts
  (all of them: the peers of a VRRP instance); nginx_exporter from the monitoring hosts;
- gpu: the model ports (vLLM and WebUI, ``firewall_webui_ports_per_host`` from each base, and any port of an
  explicit instance) from the lb hosts; the vLLM ports (its ``/metrics``) also from the monitoring hosts;
- monitoring: Prometheus and Alertmanager from the admin sources and the monitoring hosts; Alertmanager's
  cluster port (TCP and UDP) and blackbox_exporter from the monitoring hosts;
- nfs_server: the NFS ports (TCP and UDP) from the nfs_client hosts; 2049/TCP also from the monitoring hosts
  (the blackbox probe);
- and ``firewall_allow``: extra rules, each with its ports, protocol and sources (addresses, networks, or
  ``@group``).

The result holds the address sets (``sets``: name -> {"v4": [...], "v6": [...]}, each list collapsed so that
nft's interval sets accept it) and the accept rules of the ``allow`` chain (``rules``, nft syntax), and
``vrrp`` (the set VRRP adverts must come from, or None on a host that is not a load balancer).
"""

from __future__ import annotations

import ipaddress
import re

from ansible_collections.qwen3vl.ha.plugins.module_utils import checks

ROLES = ("lb", "gpu", "monitoring", "nfs_server", "nfs_client")
PROTOCOLS = ("tcp", "udp")
ANY = ("0.0.0.0/0", "::/0")
# the host variables an address is read from, in order (see address_of)
ADDRESS_KEYS = ("qwen3vl_firewall_address", "qwen3vl_backend_address", "qwen3vl_monitoring_address", "ansible_host")
_PORT_RANGE = re.compile(r"^([0-9]+)-([0-9]+)$")


def _networks(values):
    """Collapse a list of addresses/networks into the fewest networks, per family: ({"v4": [...], "v6": [...]})."""
    parsed = [ipaddress.ip_network(str(v).strip(), strict=False) for v in values]
    out = {}
    for version, key in ((4, "v4"), (6, "v6")):
        nets = ipaddress.collapse_addresses(n for n in parsed if n.version == version)
        out[key] = [str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n) for n in nets]
    return out


def group_names(config):
    """role -> the inventory group it reads (``firewall_groups`` over the defaults, which are the roles' names)."""
    names = dict((role, role) for role in ROLES)
    names.update(config.get("groups") or {})
    return names


def _as_list(value):
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def address_of(name, host_vars):
    """(addresses, error) for one host: ``qwen3vl_firewall_address`` (one or a list) when set, else every
    address among ``qwen3vl_backend_address`` and ``qwen3vl_monitoring_address``, else ``ansible_host`` when it
    is an IP address, else the default IPv4/IPv6 address in its gathered facts."""
    explicit = _as_list(host_vars.get("qwen3vl_firewall_address"))
    if explicit:
        bad = [a for a in explicit if checks.address(a, "a") is not None]
        if bad:
            return [], "qwen3vl_firewall_address of %s: %s is not an IP address" % (name, checks.show(bad[0]))
        return [str(a).strip() for a in explicit], None
    found = []
    for key in ("qwen3vl_backend_address", "qwen3vl_monitoring_address"):
        value = host_vars.get(key)
        if value and checks.address(value, key) is None and str(value).strip() not in found:
            found.append(str(value).strip())
    if not found and host_vars.get("ansible_host") and checks.address(host_vars["ansible_host"], "a") is None:
        found.append(str(host_vars["ansible_host"]).strip())
    if found:
        return found, None
    facts = host_vars.get("ansible_facts") or {}
    for key in ("default_ipv4", "default_ipv6"):
        value = (facts.get(key) or {}).get("address")
        if value and checks.address(value, key) is None:
            found.append(str(value))
    if found:
        return found, None
    return [], (
        "qwen3vl_firewall_address: the rules need the address of %s, and none of its variables holds one "
        "(ansible_host is %s); set qwen3vl_firewall_address for it" % (name, checks.show(host_vars.get("ansible_host")))
    )


def _port_text(ports):
    """nft's form of a list of ports and 'a-b' ranges: 22, 8000-8007, { 80, 443 }."""
    items = []
    for port in ports:
        text = str(port)
        if text not in items:
            items.append(text)
    return items[0] if len(items) == 1 else "{ %s }" % ", ".join(items)


def _ports_error(value, where):
    """None, or the first problem of one port, an 'a-b' range, or a list of them."""
    ports = _as_list(value)
    if not ports:
        return "%s: must name at least one port" % where
    for port in ports:
        match = _PORT_RANGE.match(str(port)) if isinstance(port, str) else None
        if match:
            low, high = int(match.group(1)), int(match.group(2))
            if not (1 <= low <= high <= 65535):
                return "%s: %s is not a port range (low-high, within 1-65535)" % (where, checks.show(port))
        else:
            problem = checks.port(port, where)
            if problem:
                return problem
    return None


def _sources_errors(values, where, groups):
    errors = []
    if not isinstance(values, (list, tuple)):
        return ["%s: must be a list of addresses, networks or @group names, got %s" % (where, checks.show(values))]
    for i, value in enumerate(values):
        if isinstance(value, str) and value.startswith("@"):
            if value[1:] not in groups:
                errors.append("%s[%d]: %s names no inventory group" % (where, i, value))
        else:
            checks.add(errors, checks.network(value, "%s[%d]" % (where, i)))
    return errors


def _settings_errors(config, groups):
    errors = []
    admin = config.get("admin_sources")
    if not isinstance(admin, (list, tuple)) or not admin:
        errors.append(
            "firewall_admin_sources: must list at least one address or network SSH is allowed from "
            "(the addresses you run Ansible and log in from); an empty list would lock everyone out"
        )
    else:
        errors += _sources_errors(admin, "firewall_admin_sources", groups)
    errors += _sources_errors(config.get("client_sources", []), "firewall_client_sources", groups)
    checks.add(
        errors,
        checks.integer(config.get("webui_ports_per_host"), "firewall_webui_ports_per_host", minimum=1, maximum=64),
        checks.one_of(config.get("refuse"), "firewall_refuse", ("reject", "drop")),
        checks.unknown_keys(config.get("groups", {}), "firewall_groups", ROLES),
    )
    for key, port in sorted((config.get("ports") or {}).items()):
        for i, value in enumerate(_as_list(port)):
            checks.add(errors, _ports_error(value, "firewall ports.%s[%d]" % (key, i)))
    allow = config.get("allow", [])
    if not isinstance(allow, (list, tuple)):
        return errors + ["firewall_allow: must be a list of rules, got %s" % checks.show(allow)]
    for i, rule in enumerate(allow):
        where = "firewall_allow[%d]" % i
        bad_keys = checks.unknown_keys(rule, where, ("name", "ports", "proto", "sources"))
        if bad_keys:
            errors.append(bad_keys)
            continue
        checks.add(
            errors,
            _ports_error(rule.get("ports"), where + ".ports"),
            checks.one_of(rule.get("proto", "tcp"), where + ".proto", PROTOCOLS),
        )
        sources = rule.get("sources")
        if not sources:
            errors.append("%s.sources: must list who may connect (addresses, networks, @group)" % where)
        else:
            errors += _sources_errors(sources, where + ".sources", groups)
    return errors


class _Rules(object):
    """Collects address sets and accept rules; resolves @group and host addresses on the way."""

    def __init__(self, groups, peers):
        self.groups, self.peers = groups, peers
        self.sets, self.rules, self.errors = {}, [], []

    def source(self, name, values):
        """Define set ``name`` from addresses, networks and @group names; return ``name``."""
        addresses = []
        for value in values:
            if isinstance(value, str) and value.startswith("@"):
                addresses += self.group(value[1:])
            else:
                addresses.append(value)
        if name not in self.sets:
            self.sets[name] = _networks(addresses)
        return name

    def group(self, group):
        out = []
        for host in self.groups.get(group, []):
            found, error = address_of(host, self.peers.get(host, {}))
            if error and error not in self.errors:
                self.errors.append(error)
            out += found
        return out

    def allow(self, comment, ports, source, proto="tcp"):
        """Accept ``proto`` to ``ports`` from set ``source`` (None: from anywhere)."""
        port_text = _port_text(ports)
        if source is None:
            self.rules.append('%s dport %s accept comment "%s"' % (proto, port_text, comment))
            return
        for family, key in (("ip", "v4"), ("ip6", "v6")):
            networks = self.sets[source][key]
            if networks in (["0.0.0.0/0"], ["::/0"]):
                match = "meta nfproto %s" % ("ipv4" if key == "v4" else "ipv6")
            elif networks:
                match = "%s saddr @%s_%s" % (family, source, key)
            else:
                continue
            self.rules.append('%s %s dport %s accept comment "%s"' % (match, proto, port_text, comment))


def _model_ports(config):
    span = int(config["webui_ports_per_host"])
    ports = config.get("ports") or {}
    vllm = ["%d-%d" % (int(ports["vllm_base"]), int(ports["vllm_base"]) + span - 1)]
    ui = ["%d-%d" % (int(ports["ui_base"]), int(ports["ui_base"]) + span - 1)]
    for instance in config.get("webui_instances") or []:
        if isinstance(instance, dict):
            vllm += [instance["vllm_port"]] if checks.is_port(instance.get("vllm_port")) else []
            ui += [instance["ui_port"]] if checks.is_port(instance.get("ui_port")) else []
    return vllm, ui


def plan(config, host, groups, peers):
    """The firewall of ``host``: {"errors", "warnings", "sets", "rules", "vrrp", "roles"}.

    ``config``: the role's settings without the ``firewall_`` prefix, ``ports`` holding the services' ports
    (ssh, http, https, node_exporter, nginx_exporter, prometheus, alertmanager, alertmanager_cluster, blackbox,
    vllm_base, ui_base, nfs, nfs_probe) and ``webui_instances`` this host's explicit instances. ``groups``: the inventory's
    groups (name -> host names). ``peers``: host name -> its address variables (``ADDRESS_KEYS`` and
    ``ansible_facts``)."""
    errors = _settings_errors(config, groups)
    result = {"errors": errors, "warnings": [], "sets": {}, "rules": [], "vrrp": None, "roles": []}
    if errors:
        return result
    names = group_names(config)
    mine = [role for role in ROLES if host in groups.get(names[role], [])]
    result["roles"] = mine
    ports = config["ports"]
    rules = _Rules(groups, peers)

    def group_set(role):
        return rules.source(role, ["@" + names[role]])

    admin = rules.source("admin", config["admin_sources"])
    rules.allow("ssh from the admin sources", _as_list(ports["ssh"]), admin)
    rules.allow("node_exporter from monitoring", _as_list(ports["node_exporter"]), group_set("monitoring"))
    if "lb" in mine:
        clients = config.get("client_sources") or []
        if clients:
            source = rules.source("clients", clients)
            if sorted(rules.sets[source]["v4"] + rules.sets[source]["v6"]) == sorted(ANY):
                del rules.sets[source]
                source = None
            rules.allow("the front door from clients", _as_list(ports["http"]) + _as_list(ports["https"]), source)
        else:
            result["warnings"].append("firewall_client_sources: empty, so no client reaches the front door")
        rules.allow("nginx_exporter from monitoring", _as_list(ports["nginx_exporter"]), group_set("monitoring"))
        result["vrrp"] = group_set("lb")
    if "gpu" in mine:
        vllm, ui = _model_ports(config)
        rules.allow("the model ports from the load balancers", vllm + ui, group_set("lb"))
        rules.allow("vLLM /metrics from monitoring", vllm, group_set("monitoring"))
    if "monitoring" in mine:
        staff = rules.source("monitoring_admin", config["admin_sources"] + ["@" + names["monitoring"]])
        rules.allow(
            "prometheus and alertmanager", _as_list(ports["prometheus"]) + _as_list(ports["alertmanager"]), staff
        )
        for proto in PROTOCOLS:
            rules.allow("alertmanager cluster", _as_list(ports["alertmanager_cluster"]), group_set("monitoring"), proto)
        rules.allow("blackbox_exporter from monitoring", _as_list(ports["blackbox"]), group_set("monitoring"))
    if "nfs_server" in mine:
        for proto in PROTOCOLS:
            rules.allow("nfs from its clients", _as_list(ports["nfs"]), group_set("nfs_client"), proto)
        rules.allow("the nfs probe from monitoring", _as_list(ports["nfs_probe"]), group_set("monitoring"))
    for i, extra in enumerate(config.get("allow") or []):
        name = extra.get("name") or "firewall_allow[%d]" % i
        rules.allow(
            name.replace('"', "'"),
            _as_list(extra["ports"]),
            rules.source("allow%d" % i, extra["sources"]),
            extra.get("proto", "tcp"),
        )
    result.update(errors=rules.errors, sets=rules.sets, rules=rules.rules)
    return result
