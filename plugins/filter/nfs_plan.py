# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters: check the nfs_server and nfs_client roles' settings, work out exports and fstab entries, and judge
the client's mount points."""

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


def _settings(config, name):
    if not isinstance(config, Mapping):
        raise AnsibleFilterError(f"{name}: the input must be a mapping of the role's settings")
    return _plain(config)


def nfs_server_plan(config):
    """Return {errors, warnings, exports} for the nfs_server role's settings (see module_utils/nfs_plan.py)."""
    settings = _settings(config, "nfs_server_plan")
    return core.server_plan(
        settings.get("exports"),
        implementation=settings.get("implementation", "kernel"),
        versions=settings.get("nfs_versions", [4]),
        allow_any_client=bool(settings.get("allow_any_client", False)),
        grace_period=settings.get("grace_period"),
        lease_time=settings.get("lease_time"),
    )


def nfs_client_plan(config, fstab_text=""):
    """Return {errors, warnings, mounts} for the nfs_client role's settings (see module_utils/nfs_plan.py)."""
    settings = _settings(config, "nfs_client_plan")
    mounts = settings.pop("mounts", [])
    if "mount_state" in settings:  # the core calls nfs_client_mount_state "state"
        settings["state"] = settings.pop("mount_state")
    return core.client_plan(mounts, settings, fstab_text=fstab_text or "")


def nfs_client_mountpoint_errors(mounts, stat_results, find_results, allow_nonempty=False):
    """Messages about mount points the plan's ``mounts`` cannot use, from the registered ``results`` of the
    role's stat and find loops (see module_utils/nfs_plan.py, mountpoint_errors)."""
    if not isinstance(mounts, list):
        raise AnsibleFilterError("nfs_client_mountpoint_errors: the input must be the plan's list of mounts")
    stats = [_plain(result.get("stat")) if isinstance(result, Mapping) else None for result in stat_results or []]
    # a skipped find (not a directory, or something is mounted there) has no stdout
    contents = [str(result.get("stdout", "")) if isinstance(result, Mapping) else "" for result in find_results or []]
    if not len(mounts) == len(stats) == len(contents):
        raise AnsibleFilterError("nfs_client_mountpoint_errors: one stat and one find result per mount are needed")
    return core.mountpoint_errors(_plain(mounts), stats, contents, bool(allow_nonempty))


class FilterModule(object):
    def filters(self):
        return {
            "nfs_server_plan": nfs_server_plan,
            "nfs_client_plan": nfs_client_plan,
            "nfs_client_mountpoint_errors": nfs_client_mountpoint_errors,
        }
