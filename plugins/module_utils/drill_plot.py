# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PNG timeline of a failover drill: what users saw, second by second, with the fault marked.

Two panels on one time axis (seconds from the moment the fault had landed): requests per second that
succeeded and that failed (by when they started), and the median and p95 end-to-end latency of the
successful ones; on both, the events as lines (fault, the service's reaction, left rotation, back,
restored, whole again).

Needs matplotlib (in requirements.txt; the drills run on the controller). ``HAS_MATPLOTLIB`` says
whether it is there; the ``drill_report`` module reports its absence instead of failing the drill.
"""

try:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    HAS_MATPLOTLIB = True
except ImportError:  # pragma: no cover - the unit tests run with matplotlib
    HAS_MATPLOTLIB = False

from ansible_collections.qwen3vl.ha.plugins.module_utils.loadgen import timeline

BUCKET = 0.25  # seconds per bar: fine enough to show a half-second hole


def _event_lines(report):
    """(seconds from the fault, label, colour) of the marks to draw, in time order."""
    events = report["events"]
    zero = events["inject_end"]
    marks = [(events["inject_start"] - zero, "fault injected", "black")]
    for lb, seconds in sorted(report["leave_rotation_s"].items()):
        marks.append((seconds, "out of rotation (%s)" % lb, "tab:orange"))
    for lb, seconds in sorted(report["back_in_rotation_s"].items()):
        marks.append((seconds, "back in rotation (%s)" % lb, "tab:green"))
    if events.get("detected") is not None:
        marks.append((events["detected"] - zero, "the service reacted", "tab:red"))
    if events.get("restored") is not None:
        marks.append((events["restored"] - zero, "restored", "tab:blue"))
    if events.get("recovered") is not None:
        marks.append((events["recovered"] - zero, "whole again", "tab:green"))
    return sorted(marks)


def plot(report, records, path):
    """Write the timeline of ``report`` (from drill_report.evaluate) and its ``records`` to ``path``."""
    zero = report["events"]["inject_end"]
    start = report["events"]["load_start"]
    first = zero - BUCKET * int((zero - start) / BUCKET + 1)
    rows = timeline(records, BUCKET, origin=first)
    t = [row["t"] - zero for row in rows]
    ok = [row["ok"] / BUCKET for row in rows]
    errors = [sum(row["failed"].values()) / BUCKET for row in rows]
    p50 = [row["p50_e2el_ms"] for row in rows]
    p95 = [row["p95_e2el_ms"] for row in rows]

    figure, (top, middle) = pyplot.subplots(2, 1, sharex=True, figsize=(13, 6), height_ratios=[3, 2])
    figure.suptitle("%s - %s" % (report["title"], "passed" if report["passed"] else "FAILED"))
    top.bar(t, ok, width=BUCKET, align="edge", color="tab:green", label="succeeded (by start)")
    top.bar(t, errors, width=BUCKET, align="edge", bottom=ok, color="tab:red", label="failed (by start)")
    top.set_ylabel("requests / s")
    middle.plot([x + BUCKET / 2 for x in t], p50, color="tab:blue", label="p50 e2el")
    middle.plot([x + BUCKET / 2 for x in t], p95, color="tab:purple", label="p95 e2el")
    middle.set_ylabel("latency (ms)")
    failed = report["failed"]
    middle.set_xlabel(
        "seconds from the fault (%d requests; failed: %d in flight, %d before the service reacted, %d after)"
        % (report["requests"], failed["in_flight"], failed["detection"], failed["new"])
    )
    for axis in (top, middle):
        axis.axvspan(report["events"]["inject_start"] - zero, 0, color="grey", alpha=0.3)
        for x, label, colour in _event_lines(report):
            axis.axvline(x, color=colour, linestyle="--", linewidth=1, label=label if axis is top else None)
        axis.grid(True, alpha=0.3)
    top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    middle.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return path
