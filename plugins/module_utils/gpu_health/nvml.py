# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The NVML collector: ``collect_nvml(nvml)`` reads every GPU through pynvml (or a stand-in).

The pynvml module is handed in, already initialised, so nothing here imports it. The NVML enum and
error numbers the collector needs are spelled out below, so that any binding with the same calls
works. A value the driver, binding or GPU does not support reads as None; other read errors are
recorded in the GPU's ``errors``.
"""

from __future__ import annotations

from .common import _MIB, CLOCK_EVENT_REASONS, GpuHealthError, empty_gpu

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
