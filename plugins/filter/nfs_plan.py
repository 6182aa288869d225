# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters: check the nfs_server and nfs_client roles' settings and work out exports and fstab entries."""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.qwen3vl.ha.plugins.module_utils import nfs_plan as core


def _plain(value):
    """Ansible's lazy containers as plain lists and dicts (the core checks with isinstance)."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def nfs_server_plan(exports, implementation="kernel", versions=(4,), allow_any_client=False):
    """Return {errors, exports} for nfs_server_exports (see module_utils/nfs_plan.py)."""
    return core.server_plan(
        _plain(exports),
        implementation=implementation,
        versions=_plain(versions),
        allow_any_client=bool(allow_any_client),
    )


def nfs_client_plan(mounts, settings, fstab_text=""):
    """Return {errors, mounts} for nfs_client_mounts (see module_utils/nfs_plan.py)."""
    if not isinstance(settings, Mapping):
        raise AnsibleFilterError("nfs_client_plan: settings must be a mapping of the role's settings")
    return core.client_plan(_plain(mounts), _plain(settings), fstab_text=fstab_text or "")


class FilterModule(object):
    def filters(self):
        return {"nfs_server_plan": nfs_server_plan, "nfs_client_plan": nfs_client_plan}
