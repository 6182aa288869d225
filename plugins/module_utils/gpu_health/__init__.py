# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure core of qwen3vl.ha.gpu_health: read NVIDIA GPUs, judge them, render Prometheus text.

Nothing here imports Ansible, pynvml or subprocess. The sources are handed in:

- ``collect_nvml(nvml)`` takes the pynvml module (or a stand-in with the same calls);
- ``collect_smi(run, nvidia_smi)`` takes a ``run(argv) -> (rc, stdout, stderr)`` callable;
- ``parse_xid(text)`` takes the kernel log as text.

Both collectors return ``{"driver_version", "cuda_version", "gpus"}`` where every GPU is a plain
dict with the keys of ``empty_gpu()``. A value the driver does not report (NVML NotSupported,
nvidia-smi ``[N/A]``) is None; None is never a fault. ``evaluate()`` turns the GPUs into verdicts
with reasons, and ``render_prometheus()`` writes them for node_exporter's textfile collector.

The package, one concern a module:

- ``common``: verdict levels, the GPU schema (``empty_gpu``), errors, versions and PCI bus ids;
- ``nvml``: the NVML collector; ``nvidia_smi``: the nvidia-smi collector and its CSV parsing;
- ``xid``: the XID catalogue and the kernel-log parser;
- ``verdict``: GPU selection, thresholds and the health rules;
- ``prometheus``: the text exposition format.

Everything is re-exported here, so callers import from the package. Runs on the managed host, so
it stays Python 3.8 compatible.
"""

from __future__ import annotations

from .common import (
    CLOCK_EVENT_REASONS,
    HEALTHY,
    NO_GPU,
    STATUS_LEVEL,
    UNHEALTHY,
    WARNING,
    GpuHealthError,
    NoDriverError,
    empty_gpu,
    normalize_bus_id,
    parse_version,
    version_older,
)
from .nvidia_smi import (
    SMI_CLOCK_PREFIX,
    SMI_CLOCK_PREFIX_LEGACY,
    SMI_COMPUTE_APPS_FIELDS,
    SMI_GPU_FIELDS,
    SMI_OPTIONAL_FIELDS,
    SMI_REMAPPED_ROWS_FIELDS,
    _gpu_from_smi_row,  # noqa: F401 -- not public; the unit tests build GPUs from single rows with it
    collect_smi,
    parse_smi_csv,
    smi_gpu_query_fields,
)
from .nvml import (
    COMPUTE_MODES,
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_LIBRARY_NOT_FOUND,
    RECOVERY_ACTIONS,
    collect_nvml,
)
from .prometheus import PROMETHEUS_PREFIX, render_prometheus
from .verdict import (
    DEFAULT_MAX_RETIRED_PAGES,
    DEFAULT_THRESHOLDS,
    evaluate,
    evaluate_gpu,
    select_gpus,
    validate_thresholds,
    xid_severity,
)
from .xid import DEFAULT_XID_FATAL, DEFAULT_XID_IGNORE, XID_DESCRIPTIONS, parse_xid

__all__ = [
    "CLOCK_EVENT_REASONS",
    "COMPUTE_MODES",
    "DEFAULT_MAX_RETIRED_PAGES",
    "DEFAULT_THRESHOLDS",
    "DEFAULT_XID_FATAL",
    "DEFAULT_XID_IGNORE",
    "HEALTHY",
    "NO_GPU",
    "NVML_ERROR_DRIVER_NOT_LOADED",
    "NVML_ERROR_LIBRARY_NOT_FOUND",
    "PROMETHEUS_PREFIX",
    "RECOVERY_ACTIONS",
    "SMI_CLOCK_PREFIX",
    "SMI_CLOCK_PREFIX_LEGACY",
    "SMI_COMPUTE_APPS_FIELDS",
    "SMI_GPU_FIELDS",
    "SMI_OPTIONAL_FIELDS",
    "SMI_REMAPPED_ROWS_FIELDS",
    "STATUS_LEVEL",
    "UNHEALTHY",
    "WARNING",
    "XID_DESCRIPTIONS",
    "GpuHealthError",
    "NoDriverError",
    "collect_nvml",
    "collect_smi",
    "empty_gpu",
    "evaluate",
    "evaluate_gpu",
    "normalize_bus_id",
    "parse_smi_csv",
    "parse_version",
    "parse_xid",
    "render_prometheus",
    "select_gpus",
    "smi_gpu_query_fields",
    "validate_thresholds",
    "version_older",
    "xid_severity",
]
