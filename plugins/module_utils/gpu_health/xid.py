# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""XID events: the numbers this collection knows and ``parse_xid()`` for the kernel log.

``DEFAULT_XID_IGNORE`` and ``DEFAULT_XID_FATAL`` sort XIDs by NVIDIA's catalogue (the verdict uses
them as its default thresholds), ``XID_DESCRIPTIONS`` names them, and ``parse_xid()`` finds the
``NVRM: Xid`` lines in dmesg, journalctl or syslog text.
"""

from __future__ import annotations

import re

from .common import normalize_bus_id

# XIDs that are the application's fault, not the GPU's (NVIDIA's catalogue: RESTART_APP, check the
# application): 13 graphics engine exception, 31 GPU memory page fault, 43 GPU stopped processing,
# 45 preemptive cleanup, 68 video processor exception, 109 context switch timeout.
DEFAULT_XID_IGNORE = (13, 31, 43, 45, 68, 109)
# XIDs after which the GPU is not fit to run a model until it is reset, the node rebooted or the
# GPU replaced (NVIDIA's catalogue: immediate action RESET_GPU or RESTART_BM).
# Deliberately not here: 63 (row remap / page retirement recorded) and 94 (contained ECC error) --
# NVML's pending-remap and pending-retirement flags say exactly when those need a reset, and unlike
# the kernel log they clear after the reset; 92 (high single-bit ECC rate) -- corrected errors,
# NVIDIA marks it non-critical.
DEFAULT_XID_FATAL = (48, 62, 64, 74, 79, 95, 119, 120, 140)

XID_DESCRIPTIONS = {
    13: "graphics engine exception",
    31: "GPU memory page fault",
    43: "GPU stopped processing",
    45: "preemptive cleanup",
    48: "double-bit ECC error",
    61: "internal micro-controller breakpoint",
    62: "internal micro-controller halt",
    63: "ECC page retirement or row remapping recorded",
    64: "ECC page retirement or row remapping failure",
    68: "video processor exception",
    74: "NVLink error",
    79: "GPU has fallen off the bus",
    92: "high single-bit ECC error rate",
    94: "contained ECC error",
    95: "uncontained ECC error",
    109: "context switch timeout",
    119: "GSP RPC timeout",
    120: "GSP error",
    140: "unrecovered ECC error",
}


_XID_RE = re.compile(
    r"NVRM: Xid \((?:PCI:)?(?P<bus>[0-9A-Fa-f]{1,8}:[0-9A-Fa-f]{1,2}:[0-9A-Fa-f]{1,2}(?:\.[0-7])?)\):\s*"
    r"(?P<xid>\d+)\s*,?\s*(?P<rest>.*)$"
)
_XID_PID_RE = re.compile(r"^pid='?(?P<pid>[^,']*)'?$")


def parse_xid(kernel_log_text):
    """Find ``NVRM: Xid`` lines (dmesg, journalctl or syslog format) and return one event per line.

    Each event: ``pci_bus_id`` (normalised, see normalize_bus_id), ``xid`` (int), ``pid`` (int or
    None), ``process`` (name or None) and ``message`` (the driver's text after those).
    """
    events = []
    for line in (kernel_log_text or "").splitlines():
        match = _XID_RE.search(line)
        if not match:
            continue
        pid = process = None
        parts = [part.strip() for part in match.group("rest").strip().split(",")]
        while parts and (parts[0].startswith("pid=") or parts[0].startswith("name=")):
            part = parts.pop(0)
            if part.startswith("name="):
                process = part[len("name=") :] or None
            else:
                pid_match = _XID_PID_RE.match(part)
                value = pid_match.group("pid") if pid_match else ""
                pid = int(value) if value.isdigit() else None
        events.append(
            {
                "pci_bus_id": normalize_bus_id(match.group("bus")),
                "xid": int(match.group("xid")),
                "pid": pid,
                "process": process,
                "message": ", ".join(parts).strip(),
            }
        )
    return events
