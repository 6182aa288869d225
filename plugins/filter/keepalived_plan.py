# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter: check the keepalived role's settings and work out every VRRP host's instances, on the controller."""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleError, AnsibleFilterError

from ansible_collections.qwen3vl.ha.plugins.module_utils import keepalived_plan as core

# Set by the role (set_fact) on every host in the play, in that host's own variable context.
HOST_SETTINGS_FACT = "_keepalived_host_settings"


def _get(mapping, key):
    try:
        return mapping.get(key)
    except (AnsibleError, KeyError, TypeError, ValueError):
        # an inventory variable that does not template for that host counts as unset
        return None


def _host_entry(host_vars):
    """The per-host input of the core: the host's own role settings when it is in the play (set_fact),
    its inventory variables otherwise, and its facts (from this play, a delegated setup or the cache)."""
    if not isinstance(host_vars, Mapping):
        return core.host_view({})
    settings = _get(host_vars, HOST_SETTINGS_FACT)
    if not isinstance(settings, Mapping):
        settings = {
            "interface": _get(host_vars, "keepalived_interface"),
            "priority": _get(host_vars, "keepalived_priority"),
            "unicast_address": _get(host_vars, "keepalived_unicast_address"),
        }
    facts = _get(host_vars, "ansible_facts")
    return core.host_view(
        dict(facts) if isinstance(facts, Mapping) else {},
        interface=settings.get("interface"),
        priority=settings.get("priority"),
        unicast_address=settings.get("unicast_address"),
    )


def keepalived_plan(config, hostvars=None, host=None):
    """Return {errors, warnings, instances, hosts} for the role settings in ``config`` (see module_utils).

    ``hostvars``: where each group host's facts and role settings are read; ``host``: the host the plan is
    for (its ``inventory_hostname``), which must be in the group."""
    if not isinstance(config, Mapping):
        raise AnsibleFilterError("keepalived_plan: the input must be a mapping of the role's settings")
    hosts = {}
    for name in config.get("group_hosts") or []:
        host_vars = None
        if isinstance(hostvars, Mapping):
            try:
                host_vars = hostvars[name]
            except KeyError:
                host_vars = None
        hosts[name] = _host_entry(host_vars)
    return core.plan(dict(config), hosts, None if host is None else str(host))


class FilterModule(object):
    def filters(self):
        return {"keepalived_plan": keepalived_plan}
