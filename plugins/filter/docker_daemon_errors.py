# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter: type-check daemon.json settings on the controller, before anything on a host changes."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.qwen3vl.ha.plugins.module_utils import docker_daemon


def docker_daemon_errors(settings, where="daemon.json", extra_keys=None):
    """Return the list of problems in ``settings``; ``where`` names the variable in messages."""
    if extra_keys is not None and not isinstance(extra_keys, (list, tuple)):
        raise AnsibleFilterError("docker_daemon_errors: extra_keys must be a list of key names")
    return docker_daemon.validate(settings, where=where, allowed_extra_keys=tuple(extra_keys or ()))


class FilterModule(object):
    def filters(self):
        return {"docker_daemon_errors": docker_daemon_errors}
