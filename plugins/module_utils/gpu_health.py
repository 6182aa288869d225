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

Runs on the managed host, so it stays Python 3.8 compatible.
"""

from __future__ import annotations

import csv
import io
import re

HEALTHY = "healthy"
WARNING = "warning"
UNHEALTHY = "unhealthy"
NO_GPU = "no_gpu"
STATUS_LEVEL = {HEALTHY: 0, WARNING: 1, UNHEALTHY: 2}

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
# Retired pages (single-bit + double-bit causes) at which a GPU is worn out. 63 is this collection's
# design default; DCGM's own diagnostic limit is 60 (DCGM_LIMIT_MAX_RETIRED_PAGES), set
# max_retired_pages to 60 to match it exactly.
DEFAULT_MAX_RETIRED_PAGES = 63

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

# Clock-event ("throttle") reasons that mean the GPU is being held back by heat or power.
# Bits from nvml.h (nvmlClocksEventReason*); idle, application clocks, SW power cap and sync boost
# are normal operation and not reported.
CLOCK_EVENT_REASONS = (
    ("hw_slowdown", 0x08, "HW slowdown"),
    ("sw_thermal_slowdown", 0x20, "SW thermal slowdown"),
    ("hw_thermal_slowdown", 0x40, "HW thermal slowdown"),
    ("hw_power_brake_slowdown", 0x80, "HW power brake slowdown"),
)

# nvmlDeviceGpuRecoveryAction_t
RECOVERY_ACTIONS = {
    0: "none",
    1: "gpu_reset",
    2: "node_reboot",
    3: "drain_p2p",
    4: "drain_and_reset",
    5: "recover_imex_domain",
    6: "bus_reset",
    7: "system_reboot",
}
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

COMPUTE_MODES = {0: "default", 1: "exclusive_thread", 2: "prohibited", 3: "exclusive_process"}

# NVML numbers used below (nvml.h), so that any binding with the same calls works.
_NVML_TEMPERATURE_GPU = 0
_NVML_TEMPERATURE_THRESHOLD_SLOWDOWN = 1
_NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
_NVML_VOLATILE_ECC = 0
_NVML_AGGREGATE_ECC = 1
_NVML_RETIRED_SBE = 0  # NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS
_NVML_RETIRED_DBE = 1  # NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR
_NVML_FI_DEV_GET_GPU_RECOVERY_ACTION = 230
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
# Errors that mean "this GPU or driver cannot tell", not "this GPU is broken".
_NVML_UNAVAILABLE = frozenset(
    {
        3,  # NOT_SUPPORTED
        4,  # NO_PERMISSION
        13,  # FUNCTION_NOT_FOUND (the driver is older than the call)
    }
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


# ---------------------------------------------------------------------------------------------
# Versions and PCI bus ids
# ---------------------------------------------------------------------------------------------

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


def _cuda_version(value):
    """NVML reports the CUDA driver version as 12040 for 12.4."""
    if value is None:
        return None
    value = int(value)
    return "%d.%d" % (value // 1000, (value % 1000) // 10)


def _text(value):
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).strip()


# ---------------------------------------------------------------------------------------------
# Collector 1: NVML (pynvml)
# ---------------------------------------------------------------------------------------------


def _nvml_exceptions(nvml):
    # pynvml raises NVMLLibraryMismatchError (not an NVMLError) when an unversioned call is missing.
    classes = [nvml.NVMLError]
    mismatch = getattr(nvml, "NVMLLibraryMismatchError", None)
    if mismatch is not None:
        classes.append(mismatch)
    return tuple(classes)


def _nvml_read(nvml, errors, name, *args):
    """Call nvml.<name>(*args); None when the binding, driver or GPU does not support it.

    Any other NVML error (GPU is lost, unknown error, ...) is recorded in ``errors`` and read as None.
    """
    func = getattr(nvml, name, None)
    if func is None:
        return None  # the installed binding predates this call
    try:
        return func(*args)
    except _nvml_exceptions(nvml) as exc:
        code = getattr(exc, "value", None)  # NVMLLibraryMismatchError has none: the call is missing
        if code is None or code in _NVML_UNAVAILABLE:
            return None
        errors.append("%s: %s" % (name, exc))
        return None


def _bit(mask, bit):
    return None if mask is None else bool(int(mask) & bit)


def _nvml_gpu(nvml, index, driver_version, cuda_version):
    gpu = empty_gpu()
    gpu["index"] = index
    gpu["driver_version"] = driver_version
    gpu["cuda_version"] = cuda_version
    errors = gpu["errors"]
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
    except _nvml_exceptions(nvml) as exc:
        errors.append("nvmlDeviceGetHandleByIndex: %s" % exc)
        return gpu

    def read(name, *args):
        return _nvml_read(nvml, errors, name, handle, *args)

    gpu["uuid"] = _text(read("nvmlDeviceGetUUID"))
    gpu["name"] = _text(read("nvmlDeviceGetName"))
    pci = read("nvmlDeviceGetPciInfo")
    if pci is not None:
        gpu["pci_bus_id"] = _text(pci.busId)

    memory = read("nvmlDeviceGetMemoryInfo")
    if memory is not None:
        gpu["memory_total_mib"] = int(memory.total) // _MIB
        gpu["memory_used_mib"] = int(memory.used) // _MIB
        gpu["memory_free_mib"] = int(memory.free) // _MIB

    gpu["temperature_c"] = read("nvmlDeviceGetTemperature", _NVML_TEMPERATURE_GPU)
    gpu["temperature_slowdown_c"] = read("nvmlDeviceGetTemperatureThreshold", _NVML_TEMPERATURE_THRESHOLD_SLOWDOWN)
    gpu["temperature_margin_c"] = read("nvmlDeviceGetMarginTemperature")
    if gpu["temperature_margin_c"] is None and None not in (gpu["temperature_c"], gpu["temperature_slowdown_c"]):
        gpu["temperature_margin_c"] = gpu["temperature_slowdown_c"] - gpu["temperature_c"]

    power = read("nvmlDeviceGetPowerUsage")  # milliwatts
    gpu["power_draw_w"] = None if power is None else round(power / 1000.0, 2)
    limit = read("nvmlDeviceGetEnforcedPowerLimit")
    gpu["power_limit_w"] = None if limit is None else round(limit / 1000.0, 2)
    utilization = read("nvmlDeviceGetUtilizationRates")
    if utilization is not None:
        gpu["utilization_gpu_pct"] = int(utilization.gpu)
        gpu["utilization_memory_pct"] = int(utilization.memory)

    persistence = read("nvmlDeviceGetPersistenceMode")
    gpu["persistence_mode"] = None if persistence is None else bool(persistence)
    compute_mode = read("nvmlDeviceGetComputeMode")
    gpu["compute_mode"] = None if compute_mode is None else COMPUTE_MODES.get(compute_mode, str(compute_mode))
    mig = read("nvmlDeviceGetMigMode")  # [current, pending]
    gpu["mig_mode"] = None if mig is None else bool(mig[0])

    ecc = read("nvmlDeviceGetEccMode")  # [current, pending]
    gpu["ecc_mode"] = None if ecc is None else bool(ecc[0])
    unc = _NVML_MEMORY_ERROR_TYPE_UNCORRECTED
    gpu["ecc_uncorrected_volatile"] = read("nvmlDeviceGetTotalEccErrors", unc, _NVML_VOLATILE_ECC)
    gpu["ecc_uncorrected_aggregate"] = read("nvmlDeviceGetTotalEccErrors", unc, _NVML_AGGREGATE_ECC)

    sbe = read("nvmlDeviceGetRetiredPages", _NVML_RETIRED_SBE)
    gpu["retired_pages_sbe"] = None if sbe is None else len(sbe)
    dbe = read("nvmlDeviceGetRetiredPages", _NVML_RETIRED_DBE)
    gpu["retired_pages_dbe"] = None if dbe is None else len(dbe)
    pending = read("nvmlDeviceGetRetiredPagesPendingStatus")
    gpu["retired_pages_pending"] = None if pending is None else bool(pending)

    rows = read("nvmlDeviceGetRemappedRows")  # (correctable, uncorrectable, pending, failure)
    if rows is not None:
        correctable, uncorrectable, rows_pending, failure = rows
        gpu["remapped_rows_correctable"] = int(correctable)
        gpu["remapped_rows_uncorrectable"] = int(uncorrectable)
        gpu["remapped_rows_pending"] = bool(rows_pending)
        gpu["remapped_rows_failure"] = bool(failure)

    # Renamed from "throttle" to "clocks event" reasons in driver R535; same bits.
    mask = read("nvmlDeviceGetCurrentClocksEventReasons")
    if mask is None:
        mask = read("nvmlDeviceGetCurrentClocksThrottleReasons")
    gpu["clock_event_reasons"] = {name: _bit(mask, bit) for name, bit, _text in CLOCK_EVENT_REASONS}

    gpu["pcie_link_gen_current"] = read("nvmlDeviceGetCurrPcieLinkGeneration")
    gpu["pcie_link_gen_max"] = read("nvmlDeviceGetMaxPcieLinkGeneration")
    gpu["pcie_link_width_current"] = read("nvmlDeviceGetCurrPcieLinkWidth")
    gpu["pcie_link_width_max"] = read("nvmlDeviceGetMaxPcieLinkWidth")

    # Recovery action: a field value on drivers that have it (R550 and later); NotSupported before.
    values = read("nvmlDeviceGetFieldValues", [_NVML_FI_DEV_GET_GPU_RECOVERY_ACTION])
    if values:
        entry = values[0]
        if int(entry.nvmlReturn) == 0:
            action = int(entry.value.uiVal)
            gpu["recovery_action"] = RECOVERY_ACTIONS.get(action, "action_%d" % action)

    processes = read("nvmlDeviceGetComputeRunningProcesses")
    if processes is not None:
        gpu["processes"] = []
        for proc in processes:
            used = getattr(proc, "usedGpuMemory", None)
            name = _nvml_read(nvml, [], "nvmlSystemGetProcessName", proc.pid)  # the process may be gone
            gpu["processes"].append(
                {
                    "pid": int(proc.pid),
                    "name": _text(name),
                    "used_memory_mib": None if used is None else int(used) // _MIB,
                }
            )
    return gpu


def collect_nvml(nvml):
    """Read every GPU through NVML. ``nvml`` is the pynvml module, already initialised (nvmlInit)."""
    host_errors = []
    driver_version = _text(_nvml_read(nvml, host_errors, "nvmlSystemGetDriverVersion"))
    cuda_version = _cuda_version(_nvml_read(nvml, host_errors, "nvmlSystemGetCudaDriverVersion"))
    try:
        count = nvml.nvmlDeviceGetCount()
    except _nvml_exceptions(nvml) as exc:
        raise GpuHealthError("NVML could not count the GPUs: %s" % exc) from exc
    gpus = [_nvml_gpu(nvml, index, driver_version, cuda_version) for index in range(count)]
    return {"driver_version": driver_version, "cuda_version": cuda_version, "gpus": gpus}


# ---------------------------------------------------------------------------------------------
# Collector 2: nvidia-smi --query-gpu=... --format=csv,noheader,nounits
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# XID events from the kernel log
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# Selecting GPUs
# ---------------------------------------------------------------------------------------------


def select_gpus(gpus, wanted):
    """Pick GPUs by index ('0', 3) or UUID ('GPU-...'); returns (selected, errors).

    ``wanted`` None or empty means all GPUs. Every entry must name a GPU the driver reports.
    """
    if not wanted:
        return list(gpus), []
    errors = []
    selected = []
    indices = sorted(gpu["index"] for gpu in gpus if gpu["index"] is not None)
    for position, entry in enumerate(wanted):
        text = str(entry).strip()
        if text.isdigit():
            found = [gpu for gpu in gpus if gpu["index"] == int(text)]
            if not found:
                errors.append(
                    "gpus[%d]: no GPU with index %s (the driver reports %s)"
                    % (position, text, ", ".join(str(i) for i in indices) or "none")
                )
        elif text.upper().startswith(("GPU-", "MIG-")):
            found = [gpu for gpu in gpus if (gpu["uuid"] or "").lower() == text.lower()]
            if not found:
                errors.append("gpus[%d]: no GPU with UUID %s on this host" % (position, text))
        else:
            found = []
            errors.append("gpus[%d]: %r is neither a GPU index nor a UUID (GPU-...)" % (position, text))
        for gpu in found:
            if gpu not in selected:
                selected.append(gpu)
    selected.sort(key=lambda gpu: (gpu["index"] is None, gpu["index"]))
    return selected, errors


# ---------------------------------------------------------------------------------------------
# The verdict
# ---------------------------------------------------------------------------------------------

DEFAULT_THRESHOLDS = {
    "max_temperature": None,
    "min_free_memory_mib": None,
    "min_driver_version": None,
    "max_retired_pages": DEFAULT_MAX_RETIRED_PAGES,
    "xid_ignore": DEFAULT_XID_IGNORE,
    "xid_fatal": DEFAULT_XID_FATAL,
}


def validate_thresholds(thresholds, expected_count=None):
    """Errors for bad threshold values, each naming the option (empty list when all are fine)."""
    errors = []
    for name in ("max_temperature", "min_free_memory_mib"):
        value = thresholds.get(name)
        if value is not None and value < 0:
            errors.append("%s must be 0 or more, got %s" % (name, value))
    if thresholds.get("max_retired_pages") is not None and thresholds["max_retired_pages"] < 1:
        errors.append("max_retired_pages must be 1 or more, got %s" % thresholds["max_retired_pages"])
    if expected_count is not None and expected_count < 0:
        errors.append("expected_count must be 0 or more, got %s" % expected_count)
    if thresholds.get("min_driver_version") is not None:
        try:
            parse_version(thresholds["min_driver_version"])
        except ValueError as exc:
            errors.append("min_driver_version: %s" % exc)
    for name in ("xid_ignore", "xid_fatal"):
        bad = [xid for xid in thresholds.get(name) or () if xid < 0]
        if bad:
            errors.append("%s: XID numbers are 0 or more, got %s" % (name, ", ".join(str(x) for x in bad)))
    both = sorted(set(thresholds.get("xid_ignore") or ()) & set(thresholds.get("xid_fatal") or ()))
    if both:
        errors.append("xid_ignore and xid_fatal both list %s; an XID can only be one" % ", ".join(str(x) for x in both))
    return errors


def xid_severity(xid, thresholds):
    if xid in thresholds["xid_ignore"]:
        return "ignored"
    if xid in thresholds["xid_fatal"]:
        return "fatal"
    return "warning"


def _xid_text(xid):
    description = XID_DESCRIPTIONS.get(xid)
    return "XID %d (%s)" % (xid, description) if description else "XID %d" % xid


def _xid_reasons(events, thresholds, where):
    """One reason per XID number, worst first: (level, text)."""
    counts = {}
    for event in events:
        counts[event["xid"]] = counts.get(event["xid"], 0) + 1
    reasons = []
    for xid in sorted(counts):
        severity = xid_severity(xid, thresholds)
        if severity == "ignored":
            continue
        text = "%s %dx in the kernel log since boot%s" % (_xid_text(xid), counts[xid], where)
        if severity == "fatal":
            reasons.append((UNHEALTHY, text + ": drain the node, then reset the GPU or reboot"))
        else:
            reasons.append((WARNING, text))
    return reasons


class _Verdict:
    """Collects reasons; the status is the worst level seen."""

    def __init__(self):
        self.status = HEALTHY
        self.reasons = []
        self.reset_required = False

    def add(self, level, reason):
        if STATUS_LEVEL[level] > STATUS_LEVEL[self.status]:
            self.status = level
        self.reasons.append(reason)

    def unhealthy(self, reason):
        self.add(UNHEALTHY, reason)

    def warning(self, reason):
        self.add(WARNING, reason)

    def needs_reset(self, reason):
        self.reset_required = True
        self.unhealthy(reason + ": drain the node and reset the GPU")


def evaluate_gpu(gpu, thresholds, xid_events=()):
    """The verdict for one GPU, following DCGM's health-watch rules. Returns a _Verdict.

    Unknown values (None) never count against the GPU.
    """
    verdict = _Verdict()

    # --- unhealthy: memory errors the GPU could not correct or contain -----------------------
    if gpu["ecc_uncorrected_volatile"]:
        verdict.unhealthy(
            "%d volatile uncorrectable (double-bit) ECC errors since the driver loaded"
            % gpu["ecc_uncorrected_volatile"]
        )
    if gpu["remapped_rows_failure"]:
        verdict.unhealthy("row remapping failed: the GPU has no spare memory rows left; replace it")
    retired = [count for count in (gpu["retired_pages_sbe"], gpu["retired_pages_dbe"]) if count is not None]
    if retired and sum(retired) >= thresholds["max_retired_pages"]:
        verdict.unhealthy(
            "%d retired memory pages (limit %d): replace the GPU" % (sum(retired), thresholds["max_retired_pages"])
        )

    # --- unhealthy until reset: repairs the driver has queued ----------------------------------
    if gpu["retired_pages_pending"]:
        verdict.needs_reset("memory pages are pending retirement")
    if gpu["remapped_rows_pending"]:
        verdict.needs_reset("a memory row remap is pending")
    if gpu["recovery_action"] not in (None, "none"):
        verdict.needs_reset("the driver asks for recovery action %r" % gpu["recovery_action"])
    for error in gpu["errors"]:
        if "reset" in error.lower():
            verdict.needs_reset("the driver could not read %s" % error)
        else:
            verdict.unhealthy("the driver could not read %s" % error)

    # --- unhealthy: not enough room for the model ---------------------------------------------
    minimum = thresholds["min_free_memory_mib"]
    if minimum is not None and gpu["memory_free_mib"] is not None and gpu["memory_free_mib"] < minimum:
        verdict.unhealthy("%d MiB free, below min_free_memory_mib %d" % (gpu["memory_free_mib"], minimum))

    # --- warning: held back by heat or power ---------------------------------------------------
    for name, _bit, text in CLOCK_EVENT_REASONS:
        if gpu["clock_event_reasons"].get(name):
            verdict.warning("clocks reduced: %s active" % text)
    temperature = gpu["temperature_c"]
    if temperature is not None:
        limit = thresholds["max_temperature"]
        if limit is not None and temperature >= limit:
            verdict.warning("temperature %d C is at or above max_temperature %d C" % (temperature, limit))
        slowdown = gpu["temperature_slowdown_c"]
        if slowdown is not None and temperature >= slowdown:
            verdict.warning("temperature %d C is at or above the slowdown threshold %d C" % (temperature, slowdown))
        elif slowdown is None and gpu["temperature_margin_c"] is not None and gpu["temperature_margin_c"] <= 0:
            verdict.warning("temperature %d C has reached the slowdown threshold" % temperature)

    # --- warning: PCIe link narrower than it can be (the generation drops at idle by design) ---
    width, width_max = gpu["pcie_link_width_current"], gpu["pcie_link_width_max"]
    if width is not None and width_max is not None and width < width_max:
        verdict.warning("PCIe link runs at x%d of x%d: reseat the GPU or check the riser and slot" % (width, width_max))

    # --- XIDs for this GPU: fatal ones are unhealthy, the others (not ignored) a warning -------
    for level, text in _xid_reasons(xid_events, thresholds, ""):
        verdict.add(level, text)
    return verdict


def _label(gpu):
    return "GPU %s (%s)" % (gpu["index"], gpu["uuid"] or gpu["pci_bus_id"] or "unknown")


def evaluate(
    gpus,
    thresholds=None,
    *,
    xid_events=(),
    expected_count=None,
    driver_version=None,
    host_gpus=None,
    count_unmatched_xids=True,
):
    """Judge the GPUs: a verdict per GPU and one for the host.

    ``gpus``: the GPUs to judge (after selection). ``host_gpus``: every GPU the driver reports
    (defaults to ``gpus``); ``expected_count`` is compared with their number, and XID events are
    matched to them by PCI bus id. Events on no known GPU (a GPU that fell off the bus may be
    missing from the list) count for the host when ``count_unmatched_xids``.

    Returns ``status``, ``healthy`` (False only when unhealthy: warnings do not make a host unfit),
    ``reasons`` (each prefixed with the GPU it is about),
    ``reset_required``, ``gpus`` (copies with ``status``, ``reasons``, ``reset_required`` and
    ``xid_events`` added), ``gpu_count`` and ``xid_events`` (each with ``gpu_index`` and ``severity``).
    """
    merged = dict(DEFAULT_THRESHOLDS)
    merged.update({key: value for key, value in (thresholds or {}).items() if value is not None})
    merged["xid_ignore"] = frozenset(merged["xid_ignore"])
    merged["xid_fatal"] = frozenset(merged["xid_fatal"])
    host_gpus = list(gpus) if host_gpus is None else list(host_gpus)

    by_bus = {normalize_bus_id(gpu["pci_bus_id"]): gpu for gpu in host_gpus if gpu["pci_bus_id"]}
    events = []
    for event in xid_events:
        gpu = by_bus.get(event["pci_bus_id"])
        annotated = dict(event, gpu_index=None if gpu is None else gpu["index"])
        annotated["severity"] = xid_severity(event["xid"], merged)
        events.append(annotated)

    host = _Verdict()
    judged = []
    for gpu in gpus:
        own = [event for event in events if event["gpu_index"] is not None and event["gpu_index"] == gpu["index"]]
        verdict = evaluate_gpu(gpu, merged, own)
        judged.append(
            dict(
                gpu,
                status=verdict.status,
                reasons=verdict.reasons,
                reset_required=verdict.reset_required,
                xid_events=own,
            )
        )
        # The host is as bad as its worst GPU; its reasons say which GPU each one is about.
        host.status = max(host.status, verdict.status, key=STATUS_LEVEL.get)
        host.reasons.extend("%s: %s" % (_label(gpu), reason) for reason in verdict.reasons)
        host.reset_required = host.reset_required or verdict.reset_required

    # --- host-level rules ----------------------------------------------------------------------
    if expected_count is not None and len(host_gpus) != expected_count:
        host.unhealthy("the driver reports %d GPUs, expected_count is %d" % (len(host_gpus), expected_count))
    minimum = merged["min_driver_version"]
    if minimum is not None:
        if driver_version is None:
            host.warning("the driver version is unknown, so min_driver_version %s cannot be checked" % minimum)
        elif version_older(driver_version, minimum):
            host.unhealthy("driver %s is older than min_driver_version %s" % (driver_version, minimum))
    if count_unmatched_xids:
        unmatched = [event for event in events if event["gpu_index"] is None]
        buses = sorted({event["pci_bus_id"] or "unknown" for event in unmatched})
        for bus in buses:
            on_bus = [event for event in unmatched if (event["pci_bus_id"] or "unknown") == bus]
            for level, text in _xid_reasons(on_bus, merged, " on PCI %s, which is no GPU the driver lists" % bus):
                host.add(level, text)

    return {
        "status": host.status,
        # Warnings do not make a host unfit to run a model; only an unhealthy verdict does.
        "healthy": host.status != UNHEALTHY,
        "reasons": host.reasons,
        "reset_required": host.reset_required,
        "gpus": judged,
        "gpu_count": len(judged),
        "xid_events": events,
    }


# ---------------------------------------------------------------------------------------------
# Prometheus text exposition format (node_exporter textfile collector)
# ---------------------------------------------------------------------------------------------

PROMETHEUS_PREFIX = "qwen3vl_gpu_"


def _escape(value):
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value):
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return "%.6g" % value


def _labels(pairs):
    if not pairs:
        return ""
    return "{" + ",".join('%s="%s"' % (key, _escape(value)) for key, value in pairs) + "}"


def _gpu_labels(gpu):
    return [("gpu", gpu["index"]), ("uuid", gpu["uuid"] or ""), ("name", gpu["name"] or "")]


def _per_gpu(key, scale=1):
    def value(gpu):
        raw = gpu.get(key)
        return raw if raw is None or scale == 1 else raw * scale

    return value


# (metric name without prefix, help text, value of one GPU). None values are left out.
_GPU_METRICS = (
    ("health", "Verdict for the GPU: 0 healthy, 1 warning, 2 unhealthy.", lambda gpu: STATUS_LEVEL[gpu["status"]]),
    ("reset_required", "1 when the GPU needs a reset (pending repair or recovery action).", _per_gpu("reset_required")),
    ("temperature_celsius", "GPU core temperature.", _per_gpu("temperature_c")),
    ("temperature_slowdown_celsius", "Temperature at which the GPU slows down.", _per_gpu("temperature_slowdown_c")),
    ("temperature_margin_celsius", "Degrees left before the slowdown threshold.", _per_gpu("temperature_margin_c")),
    ("memory_total_bytes", "GPU memory in total.", _per_gpu("memory_total_mib", _MIB)),
    ("memory_used_bytes", "GPU memory in use.", _per_gpu("memory_used_mib", _MIB)),
    ("memory_free_bytes", "GPU memory free.", _per_gpu("memory_free_mib", _MIB)),
    ("power_draw_watts", "Board power draw.", _per_gpu("power_draw_w")),
    ("power_limit_watts", "Enforced power limit.", _per_gpu("power_limit_w")),
    (
        "utilization_percent",
        "Time a kernel ran, over the driver's last sample period.",
        _per_gpu("utilization_gpu_pct"),
    ),
    ("memory_utilization_percent", "Time memory was read or written.", _per_gpu("utilization_memory_pct")),
    (
        "ecc_uncorrected_volatile_errors",
        "Uncorrected ECC errors since the driver loaded.",
        _per_gpu("ecc_uncorrected_volatile"),
    ),
    (
        "ecc_uncorrected_aggregate_errors",
        "Uncorrected ECC errors over the GPU's life.",
        _per_gpu("ecc_uncorrected_aggregate"),
    ),
    (
        "retired_pages_pending",
        "1 when memory pages wait for retirement (needs a reset).",
        _per_gpu("retired_pages_pending"),
    ),
    ("remapped_rows_pending", "1 when a memory row remap waits for a reset.", _per_gpu("remapped_rows_pending")),
    ("remapped_rows_failure", "1 when row remapping failed (replace the GPU).", _per_gpu("remapped_rows_failure")),
    (
        "processes",
        "Compute processes running on the GPU.",
        lambda gpu: None if gpu["processes"] is None else len(gpu["processes"]),
    ),
)

# (metric name, help, extra label name, [(label value, schema key)])
_GPU_LABELLED_METRICS = (
    (
        "retired_pages",
        "Retired memory pages by cause.",
        "cause",
        [("sbe", "retired_pages_sbe"), ("dbe", "retired_pages_dbe")],
    ),
    (
        "remapped_rows",
        "Remapped memory rows by the kind of error that caused them.",
        "kind",
        [("correctable", "remapped_rows_correctable"), ("uncorrectable", "remapped_rows_uncorrectable")],
    ),
    (
        "pcie_link_generation",
        "PCIe link generation (drops at idle to save power; not a fault).",
        "link",
        [("current", "pcie_link_gen_current"), ("max", "pcie_link_gen_max")],
    ),
    (
        "pcie_link_width",
        "PCIe link width in lanes.",
        "link",
        [("current", "pcie_link_width_current"), ("max", "pcie_link_width_max")],
    ),
)


def render_prometheus(result, timestamp=None):
    """Text exposition format for the check ``result`` (what the module returns).

    ``result`` needs ``gpus`` (judged), ``status``, ``gpu_count``, ``check_success`` and may have
    ``driver_version``, ``cuda_version``, ``backend``, ``xid_events``. ``timestamp`` (seconds since
    the epoch) adds a ``..._check_timestamp_seconds`` gauge; without it the text only changes
    when a reading does.
    """
    lines = []

    def metric(name, help_text, samples):
        samples = [(labels, value) for labels, value in samples if value is not None]
        if not samples:
            return
        lines.append("# HELP %s%s %s" % (PROMETHEUS_PREFIX, name, help_text))
        lines.append("# TYPE %s%s gauge" % (PROMETHEUS_PREFIX, name))
        for labels, value in samples:
            lines.append("%s%s%s %s" % (PROMETHEUS_PREFIX, name, _labels(labels), _number(value)))

    metric(
        "health_check_success",
        "1 when the check could read the GPUs (or found none where that is allowed).",
        [([], bool(result.get("check_success")))],
    )
    if timestamp is not None:
        metric(
            "health_check_timestamp_seconds", "When the check ran, seconds since the epoch.", [([], float(timestamp))]
        )
    if not result.get("check_success"):
        return "\n".join(lines) + "\n"

    metric("count", "GPUs the check looked at.", [([], result.get("gpu_count", 0))])
    status = result.get("status")
    if status in STATUS_LEVEL:
        metric(
            "health_overall", "Verdict for the host: 0 healthy, 1 warning, 2 unhealthy.", [([], STATUS_LEVEL[status])]
        )
    info = [
        ("driver_version", result.get("driver_version") or ""),
        ("cuda_version", result.get("cuda_version") or ""),
        ("backend", result.get("backend") or ""),
    ]
    metric("driver_info", "NVIDIA driver and CUDA versions (value is always 1).", [(info, 1)])

    gpus = result.get("gpus") or []
    for name, help_text, value in _GPU_METRICS:
        metric(name, help_text, [(_gpu_labels(gpu), value(gpu)) for gpu in gpus])
    for name, help_text, label, parts in _GPU_LABELLED_METRICS:
        metric(
            name,
            help_text,
            [(_gpu_labels(gpu) + [(label, value)], gpu.get(key)) for gpu in gpus for value, key in parts],
        )
    metric(
        "clock_event_active",
        "1 while a clock-event (throttle) reason holds the clocks down.",
        [
            (_gpu_labels(gpu) + [("reason", reason)], gpu["clock_event_reasons"].get(reason))
            for gpu in gpus
            for reason, _bit, _text in CLOCK_EVENT_REASONS
        ],
    )
    xid_samples = []
    for gpu in gpus:
        counts = {}
        for event in gpu.get("xid_events") or ():
            counts[event["xid"]] = counts.get(event["xid"], 0) + 1
        for xid in sorted(counts):
            xid_samples.append((_gpu_labels(gpu) + [("xid", xid)], counts[xid]))
    metric("xid_events", "XID events for the GPU in the kernel log since boot.", xid_samples)
    return "\n".join(lines) + "\n"
