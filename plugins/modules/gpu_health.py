#!/usr/bin/python
# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gpu_health
short_description: Check NVIDIA GPUs before a model container starts, and for monitoring
version_added: 0.1.0
description:
  - Reads every NVIDIA GPU on the host through NVML (the C(nvidia-ml-py) package, C(import pynvml)),
    or through C(nvidia-smi --query-gpu=... --format=csv,noheader,nounits) where that package is missing.
  - "Per GPU it reports index, UUID, name, PCI bus id, driver and CUDA versions; memory total, used and free;
    temperature, slowdown threshold and the margin to it; power draw and limit; utilisation; persistence,
    compute and MIG modes; ECC mode and volatile/aggregate uncorrected errors; retired pages and pending
    retirement; remapped rows (correctable, uncorrectable, pending, failure); the clock-event (throttle)
    reasons HW slowdown, HW thermal slowdown, HW power brake and SW thermal slowdown; PCIe link generation
    and width, current and max; running compute processes; the driver's recovery action where it has one;
    and the XID errors the driver logged for it in the kernel log since boot (C(NVRM: Xid) lines)."
  - Judges each GPU and the host C(healthy), C(warning) or C(unhealthy), with reasons, following the rules of
    DCGM's health watch (below). Fails the task when the host is unhealthy (O(fail_on_unhealthy)); warnings never fail.
  - "Unhealthy, any one of: volatile uncorrectable (double-bit) ECC errors > 0; a row-remap failure;
    retired pages (single- plus double-bit causes) >= O(max_retired_pages); pages pending retirement or a row remap
    pending (C(reset_required=true): drain the node and reset the GPU); a recovery action other than C(none)
    (NVML field C(NVML_FI_DEV_GET_GPU_RECOVERY_ACTION) or C(nvidia-smi) C(gpu_recovery_action) /
    C(reset_status.*), where the driver has them; also C(reset_required)); a reading the driver refuses with an
    error other than \"not supported\" (for example C(GPU is lost), C([GPU requires reset])); free memory below
    O(min_free_memory_mib); an XID from O(xid_fatal) on the GPU."
  - "Unhealthy for the host as a whole: the driver reports a number of GPUs other than O(expected_count); the driver
    is older than O(min_driver_version); with O(gpus) unset, an O(xid_fatal) XID on a PCI address no listed GPU has
    (a GPU that fell off the bus may be missing from the list)."
  - "Warning: clock-event reason HW slowdown, HW thermal slowdown, HW power brake slowdown or SW thermal slowdown
    active; temperature >= O(max_temperature), or at or above the GPU's slowdown threshold (or a margin to it of 0
    or less); PCIe link width below its maximum (x8 of x16); an XID neither in O(xid_ignore) nor in O(xid_fatal)."
  - "Not a fault: PCIe link generation below its maximum (GPUs drop the generation at idle to save power, it is
    reported only); a value the GPU or driver does not report (NVML C(NotSupported), C(nvidia-smi) C([N/A])),
    which is returned as C(null)."
  - Optionally writes the readings and verdicts in Prometheus text format for node_exporter's textfile collector
    (O(textfile_path)), so that monitoring and the pre-start check use the same rules.
author:
  - qwen3vl.ha developers (@qwen3vl)
requirements:
  - An NVIDIA driver on the host.
  - C(nvidia-ml-py) (C(import pynvml)) for the NVML backend; otherwise C(nvidia-smi).
options:
  gpus:
    description:
      - The GPUs to check, by index (C(0)) or UUID (C(GPU-...)). All GPUs when not set.
      - An index or UUID the driver does not report fails the task.
    type: list
    elements: str
  backend:
    description:
      - How to read the GPUs. C(auto) uses NVML when C(pynvml) imports and C(nvmlInit) succeeds, else
        C(nvidia-smi) when it is found, else reports that there is no NVIDIA driver.
    type: str
    choices: [auto, nvml, nvidia_smi]
    default: auto
  nvidia_smi_path:
    description: The C(nvidia-smi) program; a bare name is looked up on E(PATH) and in the usual sbin directories.
    type: path
    default: nvidia-smi
  fail_on_unhealthy:
    description:
      - Fail the task when the verdict is C(unhealthy). With C(false) the task only reports (RV(healthy) is C(false)).
      - Warnings never fail the task.
    type: bool
    default: true
  allow_no_gpu:
    description:
      - On a host without an NVIDIA driver (or with a driver that reports no GPU), return RV(status=no_gpu) and
        RV(gpu_count=0) instead of failing.
      - With C(false) such a host fails with a message that says which backends were tried.
    type: bool
    default: false
  max_temperature:
    description: Warn when a GPU is at or above this temperature, in degrees Celsius. Not set, only the GPU's own slowdown threshold counts.
    type: int
  min_free_memory_mib:
    description:
      - A GPU with less free memory than this, in MiB, is unhealthy. Meant for the check before a model container
        starts; leave it unset for monitoring, where the running model holds the memory.
    type: int
  expected_count:
    description: The number of GPUs the driver must report (before O(gpus) selects some); any other number is unhealthy.
    type: int
  min_driver_version:
    description: The oldest acceptable driver, compared numerically (C(535.104.05) is older than C(550.54.15)).
    type: str
  max_retired_pages:
    description:
      - A GPU with this many retired pages (single- plus double-bit causes) or more is unhealthy.
      - DCGM's own diagnostic limit is 60; set 60 to match it.
    type: int
    default: 63
  xid_ignore:
    description:
      - XIDs that are the application's fault and say nothing about the GPU (graphics engine exception, memory page
        fault, GPU stopped processing, preemptive cleanup, video processor exception, context switch timeout).
    type: list
    elements: int
    default: [13, 31, 43, 45, 68, 109]
  xid_fatal:
    description:
      - XIDs after which the GPU must be reset, the node rebooted or the GPU replaced before it runs a model
        (NVIDIA's XID catalogue; 48 double-bit ECC, 62 micro-controller halt, 64 page retirement or row remap
        failure, 74 NVLink error, 79 fallen off the bus, 95 uncontained ECC error, 119 GSP RPC timeout,
        120 GSP error, 140 unrecovered ECC error).
      - 63 (row remap recorded), 94 (contained ECC error) and 92 (high single-bit rate) are warnings by default
        because the pending-remap and pending-retirement readings already say when a reset is needed.
      - XIDs stay in the kernel log until the next boot; after a GPU reset that cleared the fault, add the XID to
        O(xid_ignore) or set O(xid_source=none) until the node reboots.
    type: list
    elements: int
    default: [48, 62, 64, 74, 79, 95, 119, 120, 140]
  xid_source:
    description:
      - "Where to read the kernel log for C(NVRM: Xid) lines. C(auto) tries C(dmesg), then C(journalctl -k -b)
        and skips the XID check with a warning when neither can be read (C(dmesg) needs root where
        C(kernel.dmesg_restrict=1)). C(file) reads O(kernel_log_path). C(none) skips the XID check."
      - C(dmesg) holds the kernel's ring buffer, which can drop the oldest lines on a long-running host;
        C(journal) keeps the whole boot where journald stores kernel messages.
    type: str
    choices: [auto, dmesg, journal, file, none]
    default: auto
  kernel_log_path:
    description: A file with kernel log lines, read when O(xid_source=file) (tests, or a saved C(dmesg)).
    type: path
  textfile_path:
    description:
      - Write the readings and verdicts in Prometheus text format to this file, for node_exporter's textfile
        collector (for example C(/var/lib/node_exporter/textfile_collector/qwen3vl_gpu.prom)).
      - The name must end in C(.prom) and the directory must exist. The file is written atomically (a temporary
        file in the same directory, then a rename) with mode C(0644), and only when its content changes.
      - Metrics are prefixed C(qwen3vl_gpu_) and labelled C(gpu), C(uuid), C(name). C(qwen3vl_gpu_health) is 0 healthy,
        1 warning, 2 unhealthy; C(qwen3vl_gpu_health_check_success) is 0 when the GPUs could not be read.
      - Temperatures, power and the timestamp change from run to run, so a task that writes the file usually
        reports C(changed).
    type: path
  textfile_timestamp:
    description:
      - Add a C(qwen3vl_gpu_health_check_timestamp_seconds) gauge (alert when it grows old, the check has stopped).
      - With it the file changes on every run; turn it off where the task must be idempotent.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: All checks are read-only and run in check mode; O(textfile_path) is not written.
  diff_mode:
    support: none
    description: No diff is shown for O(textfile_path).
notes:
  - Run as root (C(become)) so that C(dmesg) and every NVML reading are allowed.
  - A host with no GPU is not C(healthy) (RV(healthy=false)) even with O(allow_no_gpu=true); it is simply not a failure.
seealso:
  - name: NVIDIA XID catalogue
    description: What each XID means and what NVIDIA recommends doing about it.
    link: https://docs.nvidia.com/deploy/xid-errors/analyzing-xid-catalog.html
  - name: nvidia-smi
    description: The C(--query-gpu) fields used by the C(nvidia_smi) backend.
    link: https://docs.nvidia.com/deploy/nvidia-smi/index.html
"""

EXAMPLES = r"""
- name: Refuse to start the model on a GPU host that is not fit for it
  qwen3vl.ha.gpu_health:
    expected_count: 8
    min_driver_version: "550.54.15"
    min_free_memory_mib: 70000
  become: true
  register: gpu_check

- name: One vLLM container per usable GPU, assigned by UUID
  community.docker.docker_container:
    name: "vllm-{{ item.0 }}"
    image: vllm/vllm-openai:latest
    device_requests:
      - driver: nvidia
        device_ids: ["{{ item.1 }}"]
        capabilities: [[gpu]]
  loop: "{{ ansible_facts.qwen3vl_gpu_health.usable_indices | zip(ansible_facts.qwen3vl_gpu_health.usable_uuids) | list }}"

- name: Monitoring, from a systemd timer or cron - report only, write node_exporter's textfile
  qwen3vl.ha.gpu_health:
    fail_on_unhealthy: false
    allow_no_gpu: true
    textfile_path: /var/lib/node_exporter/textfile_collector/qwen3vl_gpu.prom
  become: true

- name: Check two GPUs only, through nvidia-smi, ignoring XIDs
  qwen3vl.ha.gpu_health:
    gpus: ["0", "GPU-3f9c1a52-8d4e-4b7a-9e21-6c0d2f8a7b13"]
    backend: nvidia_smi
    xid_source: none
    fail_on_unhealthy: false
  register: gpu_check

- name: Drain the node when a GPU needs a reset
  ansible.builtin.debug:
    msg: "{{ gpu_check.reasons }}"
  when: gpu_check.reset_required
"""

RETURN = r"""
status:
  description: The verdict for the host, C(healthy), C(warning), C(unhealthy), or C(no_gpu) where O(allow_no_gpu) let a host without GPUs pass.
  returned: always
  type: str
  sample: healthy
healthy:
  description: C(true) when the status is C(healthy) or C(warning); C(false) for C(unhealthy) and C(no_gpu). Usable in C(when).
  returned: always
  type: bool
  sample: true
reasons:
  description: Why the status is not C(healthy), each prefixed with the GPU it is about (empty when healthy).
  returned: always
  type: list
  elements: str
  sample: ["GPU 3 (GPU-3eaa5b74-bf6c-4d28-8945-802d3fac6b54): a memory row remap is pending: drain the node and reset the GPU"]
reset_required:
  description: C(true) when a GPU needs a reset (pending page retirement or row remap, or a recovery action).
  returned: always
  type: bool
  sample: false
gpu_count:
  description: The number of GPUs checked (after O(gpus) selection).
  returned: always
  type: int
  sample: 8
backend:
  description: What read the GPUs, C(nvml) or C(nvidia_smi); C(none) when there was no driver.
  returned: always
  type: str
  sample: nvml
driver_version:
  description: The NVIDIA driver version.
  returned: always
  type: str
  sample: "550.54.15"
cuda_version:
  description: The CUDA version the driver supports (NVML, or the C(nvidia-smi) banner); C(null) when unknown.
  returned: always
  type: str
  sample: "12.4"
xid_source:
  description: Where the XID events were read, C(dmesg), C(journal), C(file), or C(none) when the check was skipped.
  returned: always
  type: str
  sample: dmesg
xid_events:
  description: "Every C(NVRM: Xid) line in the kernel log since boot."
  returned: always
  type: list
  elements: dict
  contains:
    pci_bus_id:
      description: The GPU's PCI address as C(domain:bus:device), lower case.
      type: str
      sample: "0000:18:00"
    gpu_index:
      description: The index of the GPU at that address, C(null) when no GPU the driver lists has it.
      type: int
      sample: 0
    xid:
      description: The XID number.
      type: int
      sample: 79
    severity:
      description: C(ignored) (in O(xid_ignore)), C(fatal) (in O(xid_fatal)) or C(warning).
      type: str
      sample: fatal
    pid:
      description: The process the driver named, if any.
      type: int
      sample: 48211
    process:
      description: That process's name, if any.
      type: str
      sample: python3
    message:
      description: The rest of the driver's line.
      type: str
      sample: GPU has fallen off the bus.
  sample: []
gpus:
  description: One entry per checked GPU, with its readings and verdict. Readings the GPU or driver does not report are C(null).
  returned: always
  type: list
  elements: dict
  sample:
    - index: 0
      uuid: GPU-3f9c1a52-8d4e-4b7a-9e21-6c0d2f8a7b13
      name: NVIDIA H100 80GB HBM3
      pci_bus_id: "00000000:18:00.0"
      driver_version: "550.54.15"
      cuda_version: "12.4"
      memory_total_mib: 81559
      memory_used_mib: 564
      memory_free_mib: 80995
      temperature_c: 28
      temperature_slowdown_c: 90
      temperature_margin_c: 62
      power_draw_w: 88.12
      power_limit_w: 700.0
      utilization_gpu_pct: 0
      utilization_memory_pct: 0
      persistence_mode: true
      compute_mode: default
      mig_mode: false
      ecc_mode: true
      ecc_uncorrected_volatile: 0
      ecc_uncorrected_aggregate: 0
      retired_pages_sbe: null
      retired_pages_dbe: null
      retired_pages_pending: null
      remapped_rows_correctable: 0
      remapped_rows_uncorrectable: 0
      remapped_rows_pending: false
      remapped_rows_failure: false
      clock_event_reasons: {hw_slowdown: false, sw_thermal_slowdown: false, hw_thermal_slowdown: false, hw_power_brake_slowdown: false}
      pcie_link_gen_current: 5
      pcie_link_gen_max: 5
      pcie_link_width_current: 16
      pcie_link_width_max: 16
      recovery_action: null
      processes: []
      errors: []
      status: healthy
      reasons: []
      reset_required: false
      xid_events: []
  contains:
    index:
      description: The driver's index of the GPU (can change between boots; prefer the UUID).
      type: int
    uuid:
      description: The GPU's UUID, for device assignment (C(--gpus device=GPU-...)).
      type: str
    memory_free_mib:
      description: Free memory in MiB.
      type: int
    temperature_margin_c:
      description: Degrees left before the slowdown threshold.
      type: int
    clock_event_reasons:
      description: Which of the throttle reasons that count as a warning are active.
      type: dict
    recovery_action:
      description: The driver's recovery action (C(none), C(gpu_reset), C(node_reboot), C(drain_p2p), C(drain_and_reset), ...).
      type: str
    processes:
      description: Compute processes on the GPU, each with C(pid), C(name) and C(used_memory_mib).
      type: list
      elements: dict
    errors:
      description: Readings that failed with an error other than "not supported".
      type: list
      elements: str
    status:
      description: The verdict for this GPU, C(healthy), C(warning) or C(unhealthy).
      type: str
    reasons:
      description: Why this GPU is not healthy.
      type: list
      elements: str
    reset_required:
      description: This GPU needs a reset.
      type: bool
    xid_events:
      description: The XID events for this GPU (same keys as RV(xid_events)).
      type: list
      elements: dict
textfile:
  description: The Prometheus textfile that was written (or would be, in check mode).
  returned: when O(textfile_path) is set
  type: str
  sample: /var/lib/node_exporter/textfile_collector/qwen3vl_gpu.prom
ansible_facts:
  description: Facts for templates.
  returned: always
  type: dict
  contains:
    qwen3vl_gpu_health:
      description:
        - C(count), C(indices) and C(uuids) of the checked GPUs; C(usable_indices) and C(usable_uuids) of those
          that are not unhealthy (one model container per entry); C(driver_version), C(cuda_version), C(status).
      type: dict
      sample:
        count: 2
        indices: [0, 1]
        uuids: [GPU-3f9c1a52-8d4e-4b7a-9e21-6c0d2f8a7b13, GPU-a17e0c94-52b3-4f08-b6d1-9e4c3a2f5d60]
        usable_indices: [0, 1]
        usable_uuids: [GPU-3f9c1a52-8d4e-4b7a-9e21-6c0d2f8a7b13, GPU-a17e0c94-52b3-4f08-b6d1-9e4c3a2f5d60]
        driver_version: "550.54.15"
        cuda_version: "12.4"
        status: healthy
"""

import os
import tempfile
import time
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.qwen3vl.ha.plugins.module_utils.gpu_health import (
    DEFAULT_MAX_RETIRED_PAGES,
    DEFAULT_XID_FATAL,
    DEFAULT_XID_IGNORE,
    NO_GPU,
    UNHEALTHY,
    GpuHealthError,
    NoDriverError,
    evaluate,
    parse_xid,
    render_prometheus,
    select_gpus,
    validate_thresholds,
)
from ansible_collections.qwen3vl.ha.plugins.module_utils.gpu_health.read import read_gpus as read_host_gpus
from ansible_collections.qwen3vl.ha.plugins.module_utils.gpu_health.read import read_kernel_log as read_host_kernel_log

PYNVML_IMPORT_ERROR = None
try:
    import pynvml
except ImportError:
    HAS_PYNVML = False
    PYNVML_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_PYNVML = True


def check_input(params):
    """Errors in the options, each naming the option; nothing has been read or written yet."""
    thresholds = {name: params[name] for name in ("max_temperature", "min_free_memory_mib", "min_driver_version")}
    thresholds.update(
        max_retired_pages=params["max_retired_pages"], xid_ignore=params["xid_ignore"], xid_fatal=params["xid_fatal"]
    )
    errors = validate_thresholds(thresholds, params["expected_count"])
    for position, entry in enumerate(params["gpus"] or []):
        text = str(entry).strip()
        if not (text.isdigit() or text.upper().startswith(("GPU-", "MIG-"))):
            errors.append("gpus[%d]: %r is neither a GPU index nor a UUID (GPU-...)" % (position, entry))
    if params["xid_source"] == "file" and not params["kernel_log_path"]:
        errors.append("xid_source=file needs kernel_log_path")
    if params["kernel_log_path"] and params["xid_source"] != "file":
        errors.append("kernel_log_path is only read with xid_source=file")
    path = params["textfile_path"]
    if path:
        if not path.endswith(".prom"):
            errors.append(
                "textfile_path must end in .prom (node_exporter's textfile collector reads only *.prom): %s" % path
            )
        elif not os.path.isdir(os.path.dirname(path) or "."):
            errors.append("textfile_path: the directory %s does not exist" % (os.path.dirname(path) or "."))
    return thresholds, errors


def read_gpus(module):
    """(backend, collected) from NVML or nvidia-smi; NoDriverError when this host has no NVIDIA driver."""
    if module.params["backend"] == "nvml" and not HAS_PYNVML:
        module.fail_json(msg=missing_required_lib("nvidia-ml-py"), exception=PYNVML_IMPORT_ERROR)
    return read_host_gpus(
        module.params["backend"],
        module.params["nvidia_smi_path"],
        module.run_command,
        module.get_bin_path,
        pynvml if HAS_PYNVML else None,
    )


def read_kernel_log(module):
    """(text, source) of the kernel log for XID lines; ("", "none") when skipped."""
    try:
        text, source, problem = read_host_kernel_log(
            module.params["xid_source"], module.params["kernel_log_path"], module.run_command, module.get_bin_path
        )
    except GpuHealthError as exc:
        module.fail_json(msg=to_native(exc))
    if problem:
        module.warn("XID check skipped: %s; run with become" % problem)
    return text, source


def write_textfile(module, path, text):
    """Write ``text`` to ``path`` atomically when it differs; returns whether it changed (or would)."""
    old = None
    if os.path.exists(path):
        with open(path, encoding="utf-8", errors="replace") as handle:
            old = handle.read()
    if old == text:
        return module.set_mode_if_different(path, "0644", False)
    if module.check_mode:
        return True
    directory = os.path.dirname(path) or "."
    # node_exporter only reads *.prom, so it never sees the half-written temporary file.
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        module.atomic_move(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    module.set_mode_if_different(path, "0644", False)
    return True


def facts_for(result):
    usable = [gpu for gpu in result["gpus"] if gpu["status"] != UNHEALTHY]
    return {
        "count": result["gpu_count"],
        "indices": [gpu["index"] for gpu in result["gpus"]],
        "uuids": [gpu["uuid"] for gpu in result["gpus"]],
        "usable_indices": [gpu["index"] for gpu in usable],
        "usable_uuids": [gpu["uuid"] for gpu in usable],
        "driver_version": result["driver_version"],
        "cuda_version": result["cuda_version"],
        "status": result["status"],
    }


def no_gpu_result(reason):
    return {
        "status": NO_GPU,
        "healthy": False,
        "reasons": [reason],
        "reset_required": False,
        "gpus": [],
        "gpu_count": 0,
        "xid_events": [],
        "backend": "none",
        "driver_version": None,
        "cuda_version": None,
        "xid_source": "none",
    }


def main():
    module = AnsibleModule(
        argument_spec=dict(
            gpus=dict(type="list", elements="str"),
            backend=dict(type="str", choices=["auto", "nvml", "nvidia_smi"], default="auto"),
            nvidia_smi_path=dict(type="path", default="nvidia-smi"),
            fail_on_unhealthy=dict(type="bool", default=True),
            allow_no_gpu=dict(type="bool", default=False),
            max_temperature=dict(type="int"),
            min_free_memory_mib=dict(type="int"),
            expected_count=dict(type="int"),
            min_driver_version=dict(type="str"),
            max_retired_pages=dict(type="int", default=DEFAULT_MAX_RETIRED_PAGES),
            xid_ignore=dict(type="list", elements="int", default=list(DEFAULT_XID_IGNORE)),
            xid_fatal=dict(type="list", elements="int", default=list(DEFAULT_XID_FATAL)),
            xid_source=dict(type="str", choices=["auto", "dmesg", "journal", "file", "none"], default="auto"),
            kernel_log_path=dict(type="path"),
            textfile_path=dict(type="path"),
            textfile_timestamp=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    params = module.params
    thresholds, errors = check_input(params)
    if errors:
        module.fail_json(msg="invalid options: " + "; ".join(errors), errors=errors)

    textfile = params["textfile_path"]
    timestamp = time.time() if params["textfile_timestamp"] else None

    def finish(result, failed_msg=None, check_success=True):
        """Write the textfile (also when the check fails: monitoring must see it), then exit."""
        result["changed"] = False
        result["ansible_facts"] = {"qwen3vl_gpu_health": facts_for(result)}
        if textfile:
            result["textfile"] = textfile
            text = render_prometheus(dict(result, check_success=check_success), timestamp=timestamp)
            try:
                result["changed"] = write_textfile(module, textfile, text)
            except OSError as exc:
                module.fail_json(msg="textfile_path: cannot write %s: %s" % (textfile, to_native(exc)), **result)
        if failed_msg:
            module.fail_json(msg=failed_msg, **result)
        module.exit_json(**result)

    try:
        backend, collected = read_gpus(module)
    except NoDriverError as exc:
        if params["allow_no_gpu"]:
            finish(no_gpu_result(to_native(exc)))
        finish(no_gpu_result(to_native(exc)), failed_msg=to_native(exc), check_success=False)
    except GpuHealthError as exc:
        finish(no_gpu_result(to_native(exc)), failed_msg=to_native(exc), check_success=False)

    host_gpus = collected["gpus"]
    if not host_gpus:
        reason = "the NVIDIA driver (%s) reports no GPUs" % (collected["driver_version"] or "version unknown")
        result = dict(no_gpu_result(reason), backend=backend, driver_version=collected["driver_version"])
        if params["allow_no_gpu"]:
            finish(result)
        finish(result, failed_msg=reason)

    selected, errors = select_gpus(host_gpus, params["gpus"])
    if errors:
        module.fail_json(msg="invalid options: " + "; ".join(errors), errors=errors)

    log_text, xid_source = read_kernel_log(module)
    verdict = evaluate(
        selected,
        thresholds,
        xid_events=parse_xid(log_text),
        expected_count=params["expected_count"],
        driver_version=collected["driver_version"],
        host_gpus=host_gpus,
        count_unmatched_xids=not params["gpus"],
    )
    result = dict(
        verdict,
        backend=backend,
        driver_version=collected["driver_version"],
        cuda_version=collected["cuda_version"],
        xid_source=xid_source,
    )
    if result["status"] == UNHEALTHY and params["fail_on_unhealthy"]:
        finish(result, failed_msg="GPU health check: unhealthy: " + "; ".join(result["reasons"]))
    finish(result)


if __name__ == "__main__":
    main()
