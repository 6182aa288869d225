# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter: the firewall role's plan for one host (who may reach which port), from the inventory."""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.qwen3vl.ha.plugins.module_utils import firewall_plan as core


def _peer(host_vars):
    """Only the address variables of a host, so nothing else of it is templated."""
    out = {}
    for key in core.ADDRESS_KEYS + ("ansible_facts",):
        if key in host_vars:
            out[key] = host_vars[key]
    return out


def firewall_plan(config, host, groups, hostvars):
    """Return the plan of ``host`` (see module_utils/firewall_plan.py): errors, warnings, sets, rules, vrrp."""
    if not isinstance(config, Mapping) or not isinstance(groups, Mapping) or not isinstance(hostvars, Mapping):
        raise AnsibleFilterError(
            "firewall_plan: call it as _firewall_config | qwen3vl.ha.firewall_plan(inventory_hostname, groups, hostvars)"
        )
    names = core.group_names(config)
    needed = set()
    for role in core.ROLES:
        needed.update(groups.get(names[role], []))
    for rule in config.get("allow") or []:
        for source in (rule.get("sources") or []) if isinstance(rule, Mapping) else []:
            if isinstance(source, str) and source.startswith("@"):
                needed.update(groups.get(source[1:], []))
    peers = dict((name, _peer(hostvars[name])) for name in sorted(needed) if name in hostvars)
    plain_groups = dict((name, list(members)) for name, members in groups.items())
    return core.plan(config, host, plain_groups, peers)


class FilterModule(object):
    def filters(self):
        return {"firewall_plan": firewall_plan}
