# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters: the prometheus role's scrape configuration from the inventory, and its settings checks."""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.qwen3vl.ha.plugins.module_utils import monitoring_plan as core


def prometheus_scrape_configs(hostvars, groups, settings):
    """{"scrape_configs", "alertmanagers", "skipped"} for the hosts of ``groups`` (see the core)."""
    if not isinstance(groups, Mapping) or not isinstance(settings, Mapping):
        raise AnsibleFilterError("prometheus_scrape_configs: groups and settings must be mappings")
    wanted = {name for members in groups.values() for name in (members or [])}
    hosts = {}
    for name in sorted(wanted):
        try:
            hosts[name] = dict(hostvars[name])
        except KeyError:
            continue
    return core.scrape_configs(hosts, {k: list(v or []) for k, v in groups.items()}, dict(settings))


def monitoring_address(host_vars, port=None):
    """How the monitoring hosts reach a host (its ``host_vars``): ``address``, or ``address:port`` with a port."""
    if not isinstance(host_vars, Mapping):
        raise AnsibleFilterError("monitoring_address: the input must be one host's variables")
    address = core.address_of(dict(host_vars))
    return address if port is None else core.server_address(address, int(port))


def prometheus_plan(settings):
    """The collection's plan convention for the role's settings: {"errors": [...], "warnings": []}."""
    if not isinstance(settings, Mapping):
        raise AnsibleFilterError("prometheus_plan: the input must be a mapping of the role's settings")
    return {"errors": core.settings_errors(dict(settings)), "warnings": []}


def alertmanager_config(settings):
    """{"config": Alertmanager's configuration, "errors": [...]} from the alertmanager role's settings."""
    if not isinstance(settings, Mapping):
        raise AnsibleFilterError("alertmanager_config: the input must be a mapping of the role's settings")
    config, errors = core.alertmanager_config(dict(settings))
    return {"config": config, "errors": errors}


class FilterModule(object):
    def filters(self):
        return {
            "prometheus_scrape_configs": prometheus_scrape_configs,
            "prometheus_plan": prometheus_plan,
            "alertmanager_config": alertmanager_config,
            "monitoring_address": monitoring_address,
        }
