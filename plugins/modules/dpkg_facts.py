#!/usr/bin/python
# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dpkg_facts
short_description: The installed Debian packages as facts, from one dpkg-query call
version_added: 0.6.0
description:
  - Sets C(ansible_facts.packages) in the shape M(ansible.builtin.package_facts) gives with
    C(manager=apt) (a name maps to a list of C(name), C(version), C(arch), C(source)), read with one
    C(dpkg-query) call instead of loading apt's package cache, which takes seconds on a host with
    package lists.
  - Only fully installed packages are listed (dpkg status C(installed), or triggers pending or awaited).
    A package left half-installed, unpacked, half-configured or with only its configuration files is
    not, so a role that looks for it calls apt, which finishes or repairs it.
author:
  - qwen3vl.ha developers (@qwen3vl)
options:
  admindir:
    description: dpkg's database directory (C(dpkg-query --admindir)), for a host whose root is elsewhere.
    type: path
    default: /var/lib/dpkg
extends_documentation_fragment: []
attributes:
  check_mode:
    support: full
    description: Reads only; runs the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing, so there is nothing to show.
  facts:
    support: full
    description: Sets C(ansible_facts.packages).
notes:
  - Debian and Ubuntu only (dpkg). The roles of this collection run it once per host and run.
"""

EXAMPLES = r"""
- name: Find out which packages are installed
  qwen3vl.ha.dpkg_facts:

- name: Install nginx-light only when it is missing
  ansible.builtin.apt:
    name: nginx-light
  when: "'nginx-light' not in ansible_facts['packages']"
"""

RETURN = r"""
ansible_facts:
  description: Facts set on the host.
  returned: success
  type: dict
  contains:
    packages:
      description: Installed packages by name; each a list (one entry per installed architecture).
      returned: success
      type: dict
      sample: {"nginx-light": [{"name": "nginx-light", "version": "1.22.1-9", "arch": "amd64", "source": "apt"}]}
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.qwen3vl.ha.plugins.module_utils import dpkg_status


def main():
    module = AnsibleModule(
        argument_spec=dict(admindir=dict(type="path", default="/var/lib/dpkg")),
        supports_check_mode=True,
    )
    admindir = module.params["admindir"]
    # dpkg-query lists nothing, and exits 0, for a directory without a database
    if not os.path.isfile(os.path.join(admindir, "status")):
        module.fail_json(msg=f"no dpkg database in {admindir} (its status file is missing)")
    dpkg_query = module.get_bin_path("dpkg-query", required=True)
    cmd = [dpkg_query, "--admindir", admindir, "--show", "--showformat", dpkg_status.QUERY_FORMAT]
    rc, out, err = module.run_command(cmd)
    if rc != 0:
        module.fail_json(msg=f"dpkg-query failed (rc {rc}): {err.strip()}", rc=rc, stderr=err)
    try:
        packages = dpkg_status.parse(out)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, ansible_facts={"packages": packages})


if __name__ == "__main__":
    main()
