# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter: check the webui role's settings, resolve its instances (one per GPU) and gate them, on the controller."""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.qwen3vl.ha.plugins.module_utils import instance_gate
from ansible_collections.qwen3vl.ha.plugins.module_utils import webui_plan as core


def webui_plan(config, gpu_facts=None, checksums=None, gpu_result=None):
    """Return {"instances", "errors", "warnings"} for the role settings in ``config`` (see module_utils)."""
    if not isinstance(config, Mapping):
        raise AnsibleFilterError("webui_plan: the input must be a mapping of the role's settings")
    return core.plan(
        dict(config),
        dict(gpu_facts) if isinstance(gpu_facts, Mapping) else None,
        checksums if isinstance(checksums, (Mapping, list)) else None,
        dict(gpu_result) if isinstance(gpu_result, Mapping) else None,
    )


def webui_gate(instances, checksums=None, gpu_result=None, mounts=None):
    """Return the instances with ``blocked`` set to why each may not start ("" when it may).

    The older face of the gate: ``webui_plan(gpu_facts, checksums, gpu_result)`` does the same in one call
    and follows the collection's plan convention; this one stays while roles/webui/tasks/decide.yml uses it.
    """
    if not isinstance(instances, list):
        raise AnsibleFilterError("webui_gate: the input must be the list of planned instances")
    if mounts is not None and not isinstance(mounts, Mapping):
        raise AnsibleFilterError("webui_gate: mounts must be a mapping {mounts, mountinfo, data_dir}")
    return core.gate(
        instances,
        checksums if isinstance(checksums, (Mapping, list)) else None,
        gpu_result or None,
        dict(mounts) if mounts else None,
    )


def webui_gate_config(instances, settings):
    """The boot gate's configuration for the gated instances (see module_utils webui_plan.gate_config)."""
    if not isinstance(instances, list) or not isinstance(settings, Mapping):
        raise AnsibleFilterError("webui_gate_config: the input must be the gated instances, the argument the settings")
    try:
        return core.gate_config(instances, dict(settings))
    except (KeyError, TypeError) as exc:
        raise AnsibleFilterError("webui_gate_config: %s" % exc) from exc


def webui_gpu_watch_config(instances, settings):
    """The GPU watch's configuration for the planned instances (see module_utils webui_plan.gpu_watch_config)."""
    if not isinstance(instances, list) or not isinstance(settings, Mapping):
        raise AnsibleFilterError("webui_gpu_watch_config: the input must be the instances, the argument the settings")
    try:
        return core.gpu_watch_config(instances, dict(settings))
    except (KeyError, TypeError, ValueError) as exc:
        raise AnsibleFilterError("webui_gpu_watch_config: %s" % exc) from exc


def missing_mounts(mountinfo, paths, mounts):
    """The mount points of ``mounts`` that ``paths`` lie under and that ``mountinfo`` does not show mounted."""
    if not isinstance(mountinfo, str) or not isinstance(paths, list) or not isinstance(mounts, list):
        raise AnsibleFilterError("missing_mounts: mountinfo text | missing_mounts(list of paths, list of mount points)")
    return instance_gate.missing_mounts(paths, mounts, instance_gate.parse_mountinfo(mountinfo))


class FilterModule(object):
    def filters(self):
        return {
            "webui_plan": webui_plan,
            "webui_gate": webui_gate,
            "webui_gate_config": webui_gate_config,
            "webui_gpu_watch_config": webui_gpu_watch_config,
            "missing_mounts": missing_mounts,
        }
