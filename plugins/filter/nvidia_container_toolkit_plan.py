# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter: check the nvidia_container_toolkit role's settings on the controller, before anything changes."""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.qwen3vl.ha.plugins.module_utils import nvidia_container_toolkit_plan as core


def nvidia_container_toolkit_plan(config):
    """Return {"errors", "warnings"} for the role settings in ``config`` (see module_utils)."""
    if not isinstance(config, Mapping):
        raise AnsibleFilterError("nvidia_container_toolkit_plan: the input must be a mapping of the role's settings")
    return core.plan(config)


class FilterModule(object):
    def filters(self):
        return {"nvidia_container_toolkit_plan": nvidia_container_toolkit_plan}
