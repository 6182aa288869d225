# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters: the nginx_lb role's upstream servers from the inventory, and its preflight checks."""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.qwen3vl.ha.plugins.module_utils import nginx_lb_plan as core
from ansible_collections.qwen3vl.ha.plugins.module_utils import upstream_check, webui_plan


def _backend(host_vars):
    """The record core.upstreams needs, from one backend host's variables (a hostvars entry)."""
    name = host_vars.get("inventory_hostname")
    return {
        "host": name,
        "address": host_vars.get("qwen3vl_backend_address") or host_vars.get("ansible_host") or name,
        "deployed": webui_plan.recorded(host_vars),
    }


def nginx_lb_upstreams(
    backend_hostvars, webui_servers=None, api_servers=None, unreachable=None, check_mode=False, *, health=None
):
    """Return {"webui", "api", "skipped", "errors"} for the backend hosts whose variables are given."""
    if not isinstance(backend_hostvars, list):
        raise AnsibleFilterError("nginx_lb_upstreams: the input must be a list of backend hosts' variables")
    if health is not None and not isinstance(health, Mapping):
        raise AnsibleFilterError("nginx_lb_upstreams: health must be a mapping {vllm_path, webui_path}")
    backends = [_backend(hv) for hv in backend_hostvars]
    return core.upstreams(
        backends, webui_servers, api_servers, unreachable, bool(check_mode), health=dict(health or {})
    )


def nginx_lb_upstream_conf(check_config):
    """nginx's upstream blocks for a qwen3vl-upstream-check configuration, every server in rotation."""
    config, errors = upstream_check.load_config(check_config)
    if errors:
        raise AnsibleFilterError("nginx_lb_upstream_conf: %s" % "; ".join(errors))
    rotation, _unused = upstream_check.verdicts(config["servers"], {}, set(), assume_up=True)
    return upstream_check.render(config, rotation)


def nginx_lb_errors(config):
    """Return one message per setting in ``config`` (role variables without the prefix) that cannot work."""
    if not isinstance(config, Mapping):
        raise AnsibleFilterError("nginx_lb_errors: the input must be a mapping of the role's settings")
    return core.config_errors(dict(config))


def nginx_lb_plan(config):
    """The collection's plan convention for the same checks: {"errors": [...], "warnings": []}."""
    if not isinstance(config, Mapping):
        raise AnsibleFilterError("nginx_lb_plan: the input must be a mapping of the role's settings")
    return {"errors": core.config_errors(dict(config)), "warnings": []}


class FilterModule(object):
    def filters(self):
        return {
            "nginx_lb_upstreams": nginx_lb_upstreams,
            "nginx_lb_errors": nginx_lb_errors,
            "nginx_lb_plan": nginx_lb_plan,
            "nginx_lb_upstream_conf": nginx_lb_upstream_conf,
        }
