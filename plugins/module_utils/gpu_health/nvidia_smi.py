# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The nvidia-smi collector: ``collect_smi(run, nvidia_smi)`` and the CSV parsing behind it.

It runs ``nvidia-smi --query-gpu=... --format=csv,noheader,nounits`` (plus the remapped-rows and
compute-apps queries and the plain banner for the CUDA version) through the ``run(argv) -> (rc,
stdout, stderr)`` callable it is given, drops optional fields or switches to the legacy clock
names when this nvidia-smi does not know a field, and fills in the same GPU schema as NVML.
"""

from __future__ import annotations

import csv
import io
import re

from .common import CLOCK_EVENT_REASONS, GpuHealthError, NoDriverError, empty_gpu

# How nvidia-smi spells them (gpu_recovery_action).
_SMI_RECOVERY_ACTIONS = {
    "none": "none",
    "reset": "gpu_reset",
    "gpu reset": "gpu_reset",
    "reboot": "node_reboot",
    "node reboot": "node_reboot",
    "drain p2p": "drain_p2p",
    "drain and reset": "drain_and_reset",
}


_SMI_NOT_AVAILABLE = frozenset({"", "N/A", "[N/A]", "Not Supported", "[Not Supported]", "Not Available"})


def _int(value):
    return int(float(value))


def _float(value):
    return float(value)


def _flag(value):
    """Enabled/Disabled, Yes/No, Active/Not Active, 1/0 -> bool."""
    text = value.strip().lower()
    if text in ("enabled", "yes", "active", "1", "true"):
        return True
    if text in ("disabled", "no", "not active", "0", "false"):
        return False
    raise ValueError("not a yes/no value: %r" % value)


def _compute_mode(value):
    return value.strip().lower()


# --query-gpu fields every supported driver (R470 and later) knows: (field, schema key, converter).
SMI_GPU_FIELDS = (
    ("index", "index", _int),
    ("uuid", "uuid", str),
    ("name", "name", str),
    ("pci.bus_id", "pci_bus_id", str),
    ("driver_version", "driver_version", str),
    ("memory.total", "memory_total_mib", _int),
    ("memory.used", "memory_used_mib", _int),
    ("memory.free", "memory_free_mib", _int),
    ("temperature.gpu", "temperature_c", _int),
    ("power.draw", "power_draw_w", _float),
    ("enforced.power.limit", "power_limit_w", _float),
    ("utilization.gpu", "utilization_gpu_pct", _int),
    ("utilization.memory", "utilization_memory_pct", _int),
    ("persistence_mode", "persistence_mode", _flag),
    ("compute_mode", "compute_mode", _compute_mode),
    ("mig.mode.current", "mig_mode", _flag),
    ("ecc.mode.current", "ecc_mode", _flag),
    ("ecc.errors.uncorrected.volatile.total", "ecc_uncorrected_volatile", _int),
    ("ecc.errors.uncorrected.aggregate.total", "ecc_uncorrected_aggregate", _int),
    ("retired_pages.single_bit_ecc.count", "retired_pages_sbe", _int),
    ("retired_pages.double_bit.count", "retired_pages_dbe", _int),
    ("retired_pages.pending", "retired_pages_pending", _flag),
    ("pcie.link.gen.current", "pcie_link_gen_current", _int),
    ("pcie.link.gen.max", "pcie_link_gen_max", _int),
    ("pcie.link.width.current", "pcie_link_width_current", _int),
    ("pcie.link.width.max", "pcie_link_width_max", _int),
)
# Clock-event reasons; drivers before R535 only know them as clocks_throttle_reasons.*.
SMI_CLOCK_PREFIX = "clocks_event_reasons."
SMI_CLOCK_PREFIX_LEGACY = "clocks_throttle_reasons."
# Newer fields, left out of the query when this nvidia-smi says it does not know them.
SMI_OPTIONAL_FIELDS = (
    "temperature.gpu.tlimit",  # margin to the slowdown threshold (R535+)
    "gpu_recovery_action",  # (R570+)
    "reset_status.reset_required",
    "reset_status.drain_and_reset_recommended",
)
SMI_REMAPPED_ROWS_FIELDS = (
    "gpu_uuid",
    "remapped_rows.correctable",
    "remapped_rows.uncorrectable",
    "remapped_rows.pending",
    "remapped_rows.failure",
)
SMI_COMPUTE_APPS_FIELDS = ("gpu_uuid", "pid", "process_name", "used_memory")

_SMI_INVALID_FIELD_RE = re.compile(r'Field "([^"]+)" is not a valid field to query')
_SMI_CUDA_RE = re.compile(r"CUDA Version:\s*([0-9]+(?:\.[0-9]+)*)")
_SMI_NO_DRIVER_MARKERS = ("couldn't communicate with the NVIDIA driver", "No devices were found")


def smi_gpu_query_fields(legacy_clock_names=False, optional=SMI_OPTIONAL_FIELDS):
    """The --query-gpu field list collect_smi asks for, in order."""
    prefix = SMI_CLOCK_PREFIX_LEGACY if legacy_clock_names else SMI_CLOCK_PREFIX
    fields = [field for field, _key, _conv in SMI_GPU_FIELDS]
    fields += [prefix + name for name, _bit, _text in CLOCK_EVENT_REASONS]
    return fields + list(optional)


def parse_smi_csv(text, fields):
    """Parse ``--format=csv,noheader,nounits`` output into one dict per line, keyed by field.

    ``[N/A]``, ``[Not Supported]`` and ``N/A`` become None; other values stay strings (including
    bracketed driver complaints like ``[GPU requires reset]``, which the collector reports).
    """
    rows = []
    for number, cells in enumerate(csv.reader(io.StringIO(text), skipinitialspace=True), start=1):
        if not cells or cells == [""]:
            continue
        if len(cells) != len(fields):
            raise ValueError(
                "nvidia-smi line %d has %d values, expected %d (%s): %s"
                % (number, len(cells), len(fields), ",".join(fields), ", ".join(cells))
            )
        # No zip(strict=...): this runs on Python 3.8 targets; the lengths were checked above.
        values = [cell.strip() for cell in cells]
        rows.append({fields[i]: (None if values[i] in _SMI_NOT_AVAILABLE else values[i]) for i in range(len(fields))})
    return rows


def _smi_value(row, field, convert, errors):
    value = row.get(field)
    if value is None:
        return None
    if value.startswith("[") and value.endswith("]"):
        errors.append("%s: %s" % (field, value.strip("[]")))
        return None
    try:
        return convert(value)
    except ValueError:
        errors.append("%s: unexpected value %r" % (field, value))
        return None


def _gpu_from_smi_row(row, clock_prefix):
    gpu = empty_gpu()
    errors = gpu["errors"]
    for field, key, convert in SMI_GPU_FIELDS:
        gpu[key] = _smi_value(row, field, convert, errors)
    gpu["clock_event_reasons"] = {
        name: _smi_value(row, clock_prefix + name, _flag, errors) for name, _bit, _text in CLOCK_EVENT_REASONS
    }
    gpu["temperature_margin_c"] = _smi_value(row, "temperature.gpu.tlimit", _int, errors)
    action = _smi_value(row, "gpu_recovery_action", str, errors)
    if action is not None:
        text = action.strip().lower()
        gpu["recovery_action"] = _SMI_RECOVERY_ACTIONS.get(text, text.replace(" ", "_"))
    # Older drivers only say whether a reset is required or recommended.
    if gpu["recovery_action"] in (None, "none"):
        if _smi_value(row, "reset_status.drain_and_reset_recommended", _flag, errors):
            gpu["recovery_action"] = "drain_and_reset"
        elif _smi_value(row, "reset_status.reset_required", _flag, errors):
            gpu["recovery_action"] = "gpu_reset"
    return gpu


def _smi_failure(argv, rc, out, err):
    text = (out + "\n" + err).strip()
    if any(marker in text for marker in _SMI_NO_DRIVER_MARKERS):
        return NoDriverError("nvidia-smi cannot reach the NVIDIA driver: %s" % text.splitlines()[0])
    return GpuHealthError("%s failed (rc %s): %s" % (" ".join(argv), rc, text or "no output"))


def _smi_gpu_rows(run, nvidia_smi):
    """Run --query-gpu, dropping optional fields and switching to legacy names as this nvidia-smi needs."""
    legacy = False
    optional = list(SMI_OPTIONAL_FIELDS)
    for _attempt in range(len(SMI_OPTIONAL_FIELDS) + 2):
        fields = smi_gpu_query_fields(legacy, optional)
        argv = [nvidia_smi, "--query-gpu=" + ",".join(fields), "--format=csv,noheader,nounits"]
        rc, out, err = run(argv)
        if rc == 0:
            return parse_smi_csv(out, fields), (SMI_CLOCK_PREFIX_LEGACY if legacy else SMI_CLOCK_PREFIX)
        match = _SMI_INVALID_FIELD_RE.search(out + err)
        if match is None:
            raise _smi_failure(argv, rc, out, err)
        bad = match.group(1)
        if bad in optional:
            optional.remove(bad)
        elif bad.startswith(SMI_CLOCK_PREFIX) and not legacy:
            legacy = True
        else:
            raise GpuHealthError("nvidia-smi does not know the field %r; this driver is too old" % bad)
    raise GpuHealthError("nvidia-smi kept refusing the query fields")


def collect_smi(run, nvidia_smi="nvidia-smi"):
    """Read every GPU with nvidia-smi. ``run(argv)`` returns ``(rc, stdout, stderr)``."""
    rows, clock_prefix = _smi_gpu_rows(run, nvidia_smi)
    gpus = [_gpu_from_smi_row(row, clock_prefix) for row in rows]
    by_uuid = {gpu["uuid"]: gpu for gpu in gpus if gpu["uuid"]}

    # Remapped rows (A100 and later). A GPU or driver without row remapping fails this query: None.
    rc, out, _err = run(
        [nvidia_smi, "--query-remapped-rows=" + ",".join(SMI_REMAPPED_ROWS_FIELDS), "--format=csv,noheader,nounits"]
    )
    if rc == 0:
        for row in parse_smi_csv(out, SMI_REMAPPED_ROWS_FIELDS):
            gpu = by_uuid.get(row["gpu_uuid"])
            if gpu is None:
                continue
            errors = gpu["errors"]
            gpu["remapped_rows_correctable"] = _smi_value(row, "remapped_rows.correctable", _int, errors)
            gpu["remapped_rows_uncorrectable"] = _smi_value(row, "remapped_rows.uncorrectable", _int, errors)
            gpu["remapped_rows_pending"] = _smi_value(row, "remapped_rows.pending", _flag, errors)
            gpu["remapped_rows_failure"] = _smi_value(row, "remapped_rows.failure", _flag, errors)

    rc, out, _err = run(
        [nvidia_smi, "--query-compute-apps=" + ",".join(SMI_COMPUTE_APPS_FIELDS), "--format=csv,noheader,nounits"]
    )
    if rc == 0:
        for gpu in gpus:
            gpu["processes"] = []
        for row in parse_smi_csv(out, SMI_COMPUTE_APPS_FIELDS):
            gpu = by_uuid.get(row["gpu_uuid"])
            if gpu is not None:
                gpu["processes"].append(
                    {
                        "pid": _smi_value(row, "pid", _int, []),
                        "name": row["process_name"],
                        "used_memory_mib": _smi_value(row, "used_memory", _int, []),
                    }
                )

    # The CUDA driver version is only in the banner of plain `nvidia-smi`.
    rc, out, _err = run([nvidia_smi])
    match = _SMI_CUDA_RE.search(out) if rc == 0 else None
    cuda_version = match.group(1) if match else None
    driver_version = gpus[0]["driver_version"] if gpus else None
    for gpu in gpus:
        gpu["cuda_version"] = cuda_version
    return {"driver_version": driver_version, "cuda_version": cuda_version, "gpus": gpus}
