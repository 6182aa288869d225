# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every part of the gpu_health core shares: the verdict levels, the GPU record and its helpers.

- ``HEALTHY``, ``WARNING``, ``UNHEALTHY``, ``NO_GPU`` and ``STATUS_LEVEL`` (their order);
- ``CLOCK_EVENT_REASONS``: the clock-event bits that count as "held back by heat or power";
- ``GpuHealthError`` and ``NoDriverError``, raised by the collectors;
- ``empty_gpu()``: the fixed schema of one GPU, which both collectors fill in;
- ``parse_version()``, ``version_older()`` and ``normalize_bus_id()``: driver versions and PCI bus
  ids as NVML, nvidia-smi and the kernel log print them.
"""

from __future__ import annotations

import re

HEALTHY = "healthy"
WARNING = "warning"
UNHEALTHY = "unhealthy"
NO_GPU = "no_gpu"
STATUS_LEVEL = {HEALTHY: 0, WARNING: 1, UNHEALTHY: 2}


# Clock-event ("throttle") reasons that mean the GPU is being held back by heat or power.
# Bits from nvml.h (nvmlClocksEventReason*); idle, application clocks, SW power cap and sync boost
# are normal operation and not reported.
CLOCK_EVENT_REASONS = (
    ("hw_slowdown", 0x08, "HW slowdown"),
    ("sw_thermal_slowdown", 0x20, "SW thermal slowdown"),
    ("hw_thermal_slowdown", 0x40, "HW thermal slowdown"),
    ("hw_power_brake_slowdown", 0x80, "HW power brake slowdown"),
)


_MIB = 1024 * 1024


class GpuHealthError(Exception):
    """The GPUs could not be read at all (no driver, nvidia-smi failing)."""


class NoDriverError(GpuHealthError):
    """No NVIDIA driver on this host: NVML is not there or nvidia-smi cannot reach the driver."""


def empty_gpu():
    """One GPU with every key of the fixed schema and nothing known yet."""
    return {
        "index": None,
        "uuid": None,
        "name": None,
        "pci_bus_id": None,
        "driver_version": None,
        "cuda_version": None,
        "memory_total_mib": None,
        "memory_used_mib": None,
        "memory_free_mib": None,
        "temperature_c": None,
        "temperature_slowdown_c": None,
        "temperature_margin_c": None,
        "power_draw_w": None,
        "power_limit_w": None,
        "utilization_gpu_pct": None,
        "utilization_memory_pct": None,
        "persistence_mode": None,
        "compute_mode": None,
        "mig_mode": None,
        "ecc_mode": None,
        "ecc_uncorrected_volatile": None,
        "ecc_uncorrected_aggregate": None,
        "retired_pages_sbe": None,
        "retired_pages_dbe": None,
        "retired_pages_pending": None,
        "remapped_rows_correctable": None,
        "remapped_rows_uncorrectable": None,
        "remapped_rows_pending": None,
        "remapped_rows_failure": None,
        "clock_event_reasons": {name: None for name, _bit, _text in CLOCK_EVENT_REASONS},
        "pcie_link_gen_current": None,
        "pcie_link_gen_max": None,
        "pcie_link_width_current": None,
        "pcie_link_width_max": None,
        "recovery_action": None,
        "processes": None,
        # Reads that failed for a reason other than "not supported" (e.g. "GPU is lost").
        "errors": [],
    }


_VERSION_RE = re.compile(r"^\d+(\.\d+)*$")


def parse_version(text):
    """'550.54.15' -> (550, 54, 15); ValueError when it is not dotted numbers."""
    text = str(text).strip()
    if not _VERSION_RE.match(text):
        raise ValueError("%r is not a version like 550.54.15" % text)
    return tuple(int(part) for part in text.split("."))


def version_older(version, minimum):
    """True when driver ``version`` is older than ``minimum`` (numeric, '535.104.05' < '550.54.15')."""
    have, want = parse_version(version), parse_version(minimum)
    width = max(len(have), len(want))
    return have + (0,) * (width - len(have)) < want + (0,) * (width - len(want))


_BUS_RE = re.compile(
    r"^(?:pci:)?(?:(?P<domain>[0-9a-f]{1,8}):)?(?P<bus>[0-9a-f]{1,2}):(?P<device>[0-9a-f]{1,2})(?:\.[0-7])?$"
)


def normalize_bus_id(text):
    """'00000000:3B:00.0', '0000:3b:00', 'PCI:0000:3b:00' -> '0000:3b:00' (None when not a bus id).

    NVML and nvidia-smi print an 8-digit domain and the function; the kernel log prints a 4-digit
    domain and no function. The function is dropped: a GPU is one PCI device.
    """
    if text is None:
        return None
    match = _BUS_RE.match(str(text).strip().lower())
    if not match:
        return None
    return "%04x:%02x:%02x" % (
        int(match.group("domain") or "0", 16),
        int(match.group("bus"), 16),
        int(match.group("device"), 16),
    )
