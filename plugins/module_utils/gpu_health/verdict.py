# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which GPUs to judge and the verdict on them.

``select_gpus()`` picks GPUs by index or UUID. ``DEFAULT_THRESHOLDS`` and
``validate_thresholds()`` are the knobs and their checks; ``evaluate_gpu()`` applies DCGM-style
health rules to one GPU and ``evaluate()`` judges a host: a status and reasons per GPU, XID events
matched to GPUs by PCI bus id, and the host-level rules (GPU count, driver version).
"""

from __future__ import annotations

from .common import (
    CLOCK_EVENT_REASONS,
    HEALTHY,
    STATUS_LEVEL,
    UNHEALTHY,
    WARNING,
    normalize_bus_id,
    parse_version,
    version_older,
)
from .xid import DEFAULT_XID_FATAL, DEFAULT_XID_IGNORE, XID_DESCRIPTIONS


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


# Retired pages (single-bit + double-bit causes) at which a GPU is worn out. 63 is this collection's
# design default; DCGM's own diagnostic limit is 60 (DCGM_LIMIT_MAX_RETIRED_PAGES), set
# max_retired_pages to 60 to match it exactly.
DEFAULT_MAX_RETIRED_PAGES = 63

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
