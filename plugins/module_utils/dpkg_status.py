# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure core of the dpkg_facts module: the installed packages, from one dpkg-query call.

dpkg-query is asked for one line per package (QUERY_FORMAT: name, version, architecture, status); only
packages whose status says they are fully installed count. Half-installed, unpacked, half-configured
and config-files packages do not: a role that finds its package in such a state calls apt, which
finishes or repairs it."""

from __future__ import annotations

QUERY_FORMAT = "${Package}\\t${Version}\\t${Architecture}\\t${db:Status-Status}\\n"

# dpkg's states of a package whose files are unpacked and configured; trigger processing pending or
# awaited does not make a package unusable.
INSTALLED_STATES = frozenset(("installed", "triggers-pending", "triggers-awaited"))


def parse(text):
    """dpkg-query output (QUERY_FORMAT) -> {name: [{"name", "version", "arch", "source": "apt"}]}, the
    shape ansible.builtin.package_facts gives with manager=apt. A name installed for two architectures
    (multiarch) has two entries. Raises ValueError naming the line that does not have four fields."""
    packages = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 4:
            raise ValueError(f"dpkg-query line {number} has {len(fields)} fields, not 4: {line!r}")
        name, version, arch, status = fields
        if status not in INSTALLED_STATES:
            continue
        packages.setdefault(name, []).append({"name": name, "version": version, "arch": arch, "source": "apt"})
    return packages
