# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``render_prometheus()``: a check result in the Prometheus text exposition format.

The text is meant for node_exporter's textfile collector: one gauge per reading, labelled with
the GPU's index, UUID and name, metrics prefixed ``PROMETHEUS_PREFIX``.
"""

from __future__ import annotations

from .common import _MIB, CLOCK_EVENT_REASONS, STATUS_LEVEL

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
