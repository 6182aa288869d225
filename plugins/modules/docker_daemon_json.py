#!/usr/bin/python
# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: docker_daemon_json
short_description: Merge settings into Docker's daemon.json without clobbering other owners' keys
version_added: 0.1.0
description:
  - Reads the existing C(daemon.json), deep-merges O(settings) into it (mappings merge key by key,
    lists and scalars are replaced), drops O(remove), type-checks the result and writes it
    atomically when it differs.
  - Keys that are already in the file and not named in O(settings) are kept, so several roles can
    each contribute their part (log rotation here, the C(nvidia) runtime there).
  - Refuses the C(hosts) key (it conflicts with the systemd unit's C(-H fd://)) and keys dockerd
    does not know, because dockerd would then refuse to start.
  - When O(validate_command) is set (for example C(dockerd --validate --config-file %s) on Docker
    23.0 and later) the candidate file is checked with it before it replaces the old one.
  - Reports which top-level keys changed and whether a reload (SIGHUP) is enough or a restart is needed.
author:
  - qwen3vl.ha developers (@qwen3vl)
options:
  path:
    description: Path of the daemon configuration file.
    type: path
    default: /etc/docker/daemon.json
  settings:
    description: Keys to merge into the file.
    type: dict
    default: {}
  remove:
    description: Top-level keys to delete from the file.
    type: list
    elements: str
    default: []
  extra_keys:
    description: Keys not in this module's table that the installed dockerd is known to accept.
    type: list
    elements: str
    default: []
  validate_command:
    description:
      - Command run on the candidate file before it is moved into place; C(%s) is replaced by its path.
      - A non-zero exit keeps the old file and fails the task.
    type: str
  mode:
    description: File mode of the written file.
    type: raw
    default: "0644"
extends_documentation_fragment: []
attributes:
  check_mode:
    support: full
    description: Reports the change and the diff without writing.
  diff_mode:
    support: full
    description: Shows the old and new file content.
notes:
  - Secrets do not belong in C(daemon.json); registry credentials live in C(~/.docker/config.json).
"""

EXAMPLES = r"""
- name: Add the NVIDIA runtime, keeping whatever else is configured
  qwen3vl.ha.docker_daemon_json:
    settings:
      runtimes:
        nvidia:
          path: nvidia-container-runtime
          runtimeArgs: []
  register: daemon_json

- name: Restart dockerd only when a reload is not enough
  ansible.builtin.systemd_service:
    name: docker
    state: restarted
  when: daemon_json.changed and daemon_json.needs_restart
"""

RETURN = r"""
config:
  description: The resulting configuration (what the file holds, or would hold in check mode).
  returned: success
  type: dict
  sample: {"live-restore": true, "log-driver": "json-file"}
changed_keys:
  description: Top-level keys that were added, removed or changed.
  returned: success
  type: list
  elements: str
  sample: ["runtimes"]
needs_restart:
  description:
    - True when a changed key is not re-read by dockerd on reload (SIGHUP), or a key was removed (a reload
      leaves a removed key's old value in force).
  returned: success
  type: bool
  sample: false
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.qwen3vl.ha.plugins.module_utils import docker_daemon


def _read(path):
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default="/etc/docker/daemon.json"),
            settings=dict(type="dict", default={}),
            remove=dict(type="list", elements="str", default=[]),
            extra_keys=dict(type="list", elements="str", default=[], no_log=False),
            validate_command=dict(type="str"),
            mode=dict(type="raw", default="0644"),
        ),
        supports_check_mode=True,
    )
    path = module.params["path"]
    settings = module.params["settings"]
    extra = module.params["extra_keys"]

    errors = docker_daemon.validate(settings, where="settings", allowed_extra_keys=extra)
    if errors:
        module.fail_json(msg="invalid daemon.json settings: " + "; ".join(errors), errors=errors)

    old_text = _read(path)
    try:
        before = docker_daemon.parse(old_text, where=path)
    except ValueError as exc:
        module.fail_json(msg=to_native(exc))
    after = docker_daemon.remove_keys(docker_daemon.merge(before, settings), module.params["remove"])
    errors = docker_daemon.validate(after, where=path, allowed_extra_keys=extra)
    if errors:
        module.fail_json(msg="the merged daemon.json would be invalid: " + "; ".join(errors), errors=errors)

    keys = docker_daemon.changed_keys(before, after)
    new_text = docker_daemon.render(after)
    # A file that only differs in formatting is rewritten once (canonical form), but no key changed.
    changed = new_text != old_text
    result = dict(
        changed=changed,
        config=after,
        changed_keys=keys,
        needs_restart=docker_daemon.needs_restart(keys, removed=[k for k in keys if k not in after]),
        diff=dict(before=old_text, after=new_text, before_header=path, after_header=path),
    )
    if changed and not module.check_mode:
        directory = os.path.dirname(path) or "."
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        fd, tmp = tempfile.mkstemp(prefix=".daemon.json.", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(new_text)
            if module.params["validate_command"]:
                cmd = module.params["validate_command"]
                if "%s" not in cmd:
                    module.fail_json(msg="validate_command must contain %s (the candidate file's path)")
                rc, out, err = module.run_command(cmd.replace("%s", tmp), use_unsafe_shell=False)
                if rc != 0:
                    module.fail_json(
                        msg="validation of the new daemon.json failed; the old file is kept",
                        rc=rc,
                        stdout=out,
                        stderr=err,
                    )
            module.set_mode_if_different(tmp, module.params["mode"], False)
            module.atomic_move(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    elif not changed and os.path.exists(path):
        # Content is right; the mode may still need fixing.
        result["changed"] = module.set_mode_if_different(path, module.params["mode"], False)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
