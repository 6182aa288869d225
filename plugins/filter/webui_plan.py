# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter: resolve the webui role's instances (one per GPU) and check them, on the controller."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.qwen3vl.ha.plugins.module_utils import webui_plan as core


def webui_plan(config, gpu_facts=None):
    """Return {"instances": [...], "errors": [...]} for the role variables in ``config``."""
    if not isinstance(config, dict):
        raise AnsibleFilterError("webui_plan: the input must be a mapping of the role's settings")
    return core.plan(config, gpu_facts if isinstance(gpu_facts, dict) else None)


def webui_gate(instances, checksums=None, gpu_result=None):
    """Return the instances with ``blocked`` set to why each may not start ("" when it may)."""
    if not isinstance(instances, list):
        raise AnsibleFilterError("webui_gate: the input must be the list of planned instances")
    return core.gate(instances, checksums if isinstance(checksums, (dict, list)) else None, gpu_result or None)


class FilterModule(object):
    def filters(self):
        return {"webui_plan": webui_plan, "webui_gate": webui_gate}
