# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What users saw during a failover drill: the verdict, the numbers, and the Markdown, from the load
generator's records and the times the drill playbook noted.

Pure Python (no Ansible imports): the ``drill_report`` module and the unit tests call it.

Times
=====

Every time is wall-clock seconds since the epoch, on the machine that ran the load generator (the
controller): the load generator's records and the playbook's events use the same clock. Rotation
changes come from the load balancers' checker state (``since``), which is their clock; on the lab they
share the controller's, elsewhere NTP keeps them within milliseconds of it.

The fault is a window, not an instant: the command that injects it (``docker kill`` on the GPU host, say)
starts at ``inject_start`` and has landed by ``inject_end``. A failed request is

- **in flight at the fault** when it started before ``inject_end`` and ended after ``inject_start``: it may
  have reached the broken part before anything could route around it;
- **in the detection window** when it started after the fault had landed but before the service had reacted
  (``detected``: for an instance fault, when the last load balancer's nginx was seen serving without it,
  its checker's ``applied``, or where that was not seen, the last checker's decision to take it out plus
  one probe interval; for a load balancer fault, when another load balancer took the VIP over).
  A request nginx cannot retry safely (a WebUI whose own vLLM died answers 502 to a POST) fails here; one
  it can (a refused connection) does not. Reported, and limited only when ``max_detection_failures`` is
  set. Without ``detected`` the window is empty;
- **new** when it started after that: the service had reacted, and should have sent it elsewhere. The
  drills require none.

Failures that ended before the fault are reported apart (``before``): the service was not healthy when the
drill began, which the steady-state check should already have refused.
"""

from ansible_collections.qwen3vl.ha.plugins.module_utils.loadgen import aggregate, longest_gap

# (threshold name, what it limits): a None threshold is not checked
THRESHOLDS = (
    ("max_new_failures", "failed requests started after the service had reacted to the fault"),
    ("max_in_flight_failures", "failed requests in flight at the fault"),
    ("max_detection_failures", "failed requests started after the fault, before the service had reacted"),
    ("max_first_success_s", "seconds from the fault to the first answer of a request that succeeded"),
    ("max_longest_gap_s", "the longest time with no successful request"),
    ("max_leave_rotation_s", "seconds until the broken instance left rotation"),
    ("max_recover_s", "seconds until the service was whole again"),
)


def _failed(records):
    return [r for r in records if not r.get("ok")]


def split_failures(records, inject_start, inject_end, detected=None):
    """Failed requests by when they ran: ``before`` the fault, ``in_flight`` at it, in the ``detection`` window,
    ``new`` after it (see the module docstring)."""
    failed = _failed(records)
    known = inject_end if detected is None else max(detected, inject_end)
    # a partition: started before the fault had landed (over before it began, or in flight), or after it
    return {
        "before": [r for r in failed if r["start"] < inject_end and r["end"] <= inject_start],
        "in_flight": [r for r in failed if r["start"] < inject_end and r["end"] > inject_start],
        "detection": [r for r in failed if inject_end <= r["start"] < known],
        "new": [r for r in failed if r["start"] >= known],
    }


def first_answer_after(records, when):
    """Seconds from ``when`` to the first answer users got to a request sent at or after it that succeeded: its
    first token for a streamed chat (start + ttft), its whole answer otherwise. None when none succeeded.

    (Not the end of that request: a chat streams for a while, and its length says nothing about the fault.)"""
    answers = [
        r["start"] + (r["ttft"] if r.get("ttft") is not None else r["e2el"])
        for r in records
        if r.get("ok") and r["start"] >= when
    ]
    return round(min(answers) - when, 3) if answers else None


def _rotation_times(rotation, inject_end):
    """{lb: seconds from the fault} to leaving rotation (the checker's decision, ``out_since``), to nginx
    serving without it (``out_applied``) and to being back (``back_since``)."""
    times = {"out_since": {}, "out_applied": {}, "back_since": {}}
    for lb, seen in sorted((rotation or {}).items()):
        for name, found in times.items():
            if seen.get(name) is not None:
                found[lb] = round(seen[name] - inject_end, 3)
    return times["out_since"], times["out_applied"], times["back_since"]


def _window(records, start, end):
    """The load generator's figures (named as ``vllm bench serve`` names them) for requests started in the window."""
    figures = aggregate(records, start, end)
    keep = ("duration", "completed", "failed", "request_throughput", "median_ttft_ms", "median_e2el_ms", "p99_e2el_ms")
    return {key: _round(figures[key], 2) for key in keep} | {"errors": figures["errors"]}


def _round(value, digits=1):
    return None if value is None else round(value, digits)


def _check(failures, thresholds, name, measured):
    """Add a failure message when ``measured`` breaks the threshold ``name`` (None measured: not reached)."""
    limit = thresholds.get(name)
    if limit is None:
        return
    what = dict(THRESHOLDS)[name]
    if measured is None:
        failures.append("drill_thresholds.%s: %s never happened (limit %s)" % (name, what, limit))
    elif measured > limit:
        failures.append("drill_thresholds.%s: %s was %s, over the limit %s" % (name, what, measured, limit))


def evaluate(records, events, context, thresholds):
    """The drill's report: numbers, verdict and the reasons for a failed verdict.

    ``events``: load_start, load_end, inject_start, inject_end, and optionally detected (see above),
    recovered (the service whole again, by the drill's own observation) and restored (the restore step done).
    ``context``: drill, title, fault, target, and optionally rotation {lb: {out_since, out_applied, back_since}},
    vip {before, after}, continuity {ok, detail, ...}, bounds {name: seconds and how they were derived}.
    ``thresholds``: see THRESHOLDS, plus ``continuity`` (True: session continuity must hold).
    """
    inject_start, inject_end = events["inject_start"], events["inject_end"]
    split = split_failures(records, inject_start, inject_end, events.get("detected"))
    recovered = events.get("recovered")
    leave, nginx_took, back = _rotation_times(context.get("rotation"), inject_end)
    recover_s = round(recovered - inject_end, 3) if recovered is not None else None
    gap = longest_gap(records, events["load_start"], events["load_end"])
    first_ok = first_answer_after(records, inject_end)
    after_fault = recovered if recovered is not None else inject_end
    report = {
        "drill": context["drill"],
        "title": context.get("title", context["drill"]),
        "fault": context.get("fault", ""),
        "target": context.get("target", ""),
        "events": dict(events),
        "requests": len(records),
        "failed": {name: len(rows) for name, rows in split.items()},
        "failed_by_class": aggregate(records)["errors"],
        "new_failures": [_brief(r) for r in split["new"][:10]],
        "first_success_after_fault_s": first_ok,
        "longest_gap_s": round(gap["seconds"], 3),
        "longest_gap_at": [round(gap["from"] - inject_end, 3), round(gap["to"] - inject_end, 3)],
        "leave_rotation_s": leave,
        "left_rotation_s": max(leave.values()) if leave else None,  # on the last load balancer to act
        "nginx_without_it_s": nginx_took,
        "reacted_s": round(events["detected"] - inject_end, 3) if events.get("detected") is not None else None,
        "back_in_rotation_s": back,
        "recover_s": recover_s,
        "vip": context.get("vip") or {},
        "continuity": context.get("continuity"),
        "bounds": context.get("bounds") or {},
        "thresholds": dict(thresholds),
        "windows": {
            "before": _window(records, events["load_start"], inject_start),
            "during": _window(records, inject_start, after_fault),
            "after": _window(records, after_fault, events["load_end"]),
        },
    }
    failures = verdict(report, thresholds)
    report["failures"] = failures
    report["passed"] = not failures
    return report


def verdict(report, thresholds):
    """The messages of every threshold the report breaks (empty: the drill passed)."""
    failures = []
    if report["failed"]["before"]:
        failures.append("%d requests failed before the fault: the service was not healthy" % report["failed"]["before"])
    _check(failures, thresholds, "max_new_failures", report["failed"]["new"])
    _check(failures, thresholds, "max_in_flight_failures", report["failed"]["in_flight"])
    _check(failures, thresholds, "max_detection_failures", report["failed"]["detection"])
    _check(failures, thresholds, "max_first_success_s", report["first_success_after_fault_s"])
    _check(failures, thresholds, "max_longest_gap_s", report["longest_gap_s"])
    if thresholds.get("max_leave_rotation_s") is not None:
        _check(failures, thresholds, "max_leave_rotation_s", report["left_rotation_s"])
    _check(failures, thresholds, "max_recover_s", report["recover_s"])
    if thresholds.get("continuity"):
        continuity = report["continuity"] or {}
        if not continuity.get("ok"):
            failures.append(
                "drill_thresholds.continuity: the session history was not read back (%s)"
                % continuity.get("detail", "not checked")
            )
    return failures


def _brief(record):
    return {
        key: record.get(key)
        for key in ("kind", "start", "end", "error", "detail", "backend", "status")
        if key in record
    }


def _cell(value, unit=""):
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join("%s %s%s" % (k, v, unit) for k, v in sorted(value.items())) or "-"
    return "%s%s" % (value, unit)


def markdown(report, png_name=None):
    """The drill's report as Markdown: verdict, what users saw, the windows, and the thresholds."""
    lines = [
        "# Drill: %s" % report["title"],
        "",
        "**%s**. Fault: %s (target: %s)."
        % ("PASSED" if report["passed"] else "FAILED", report["fault"], report["target"]),
        "",
    ]
    lines += ["- %s" % failure for failure in report["failures"]]
    if report["failures"]:
        lines.append("")
    rows = [
        ("requests", report["requests"]),
        ("failed, in flight at the fault", report["failed"]["in_flight"]),
        ("failed, started before the service reacted", report["failed"]["detection"]),
        ("failed, started after that", report["failed"]["new"]),
        ("failures by class", _cell(report["failed_by_class"])),
        (
            "first answer after the fault (first token, or whole answer)",
            _cell(report["first_success_after_fault_s"], " s"),
        ),
        ("longest time without a success", _cell(report["longest_gap_s"], " s")),
        ("left rotation after", _cell(report["leave_rotation_s"], " s")),
        ("nginx served without it after", _cell(report.get("nginx_without_it_s"), " s")),
        ("the service reacted after", _cell(report.get("reacted_s"), " s")),
        ("back in rotation after", _cell(report["back_in_rotation_s"], " s")),
        ("whole again after", _cell(report["recover_s"], " s")),
        ("VIP holder before / after", "%s / %s" % (report["vip"].get("before", "-"), report["vip"].get("after", "-"))),
        ("session continuity", _continuity(report["continuity"])),
    ]
    lines += ["| what users saw | value |", "| --- | --- |"]
    lines += ["| %s | %s |" % row for row in rows]
    lines += [
        "",
        "| requests started | completed | failed | request_throughput | median_ttft_ms | median_e2el_ms "
        "| p99_e2el_ms |",
    ]
    lines += ["| --- | --- | --- | --- | --- | --- | --- |"]
    for name in ("before", "during", "after"):
        w = report["windows"][name]
        lines.append(
            "| %s the fault (%s s) | %s | %s | %s | %s | %s | %s |"
            % (
                name,
                w["duration"],
                w["completed"],
                w["failed"],
                _cell(w["request_throughput"]),
                _cell(w["median_ttft_ms"]),
                _cell(w["median_e2el_ms"]),
                _cell(w["p99_e2el_ms"]),
            )
        )
    limits = ["%s = %s" % item for item in sorted(report["thresholds"].items()) if item[1] is not None]
    lines += ["", "Thresholds: %s." % (", ".join(limits) or "none")]
    if report["bounds"]:
        lines.append(
            "Bounds from the settings: %s." % "; ".join("%s: %s" % i for i in sorted(report["bounds"].items()))
        )
    if png_name:
        lines += ["", "![timeline](%s)" % png_name]
    return "\n".join(lines) + "\n"


def _continuity(continuity):
    if not continuity:
        return "not checked"
    return "%s (%s)" % ("yes" if continuity.get("ok") else "NO", continuity.get("detail", ""))


def summary(reports):
    """One Markdown table across drills, in the order given."""
    lines = [
        "| drill | verdict | requests | failed in flight | failed before reaction | failed new | first success s "
        "| longest gap s | left rotation s | reacted s | whole again s | continuity |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in reports:
        lines.append(
            "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |"
            % (
                r["title"],
                "pass" if r["passed"] else "**FAIL**",
                r["requests"],
                r["failed"]["in_flight"],
                r["failed"]["detection"],
                r["failed"]["new"],
                _cell(r["first_success_after_fault_s"]),
                _cell(r["longest_gap_s"]),
                _cell(r["left_rotation_s"]),
                _cell(r.get("reacted_s")),
                _cell(r["recover_s"]),
                "-" if not r["continuity"] else ("yes" if r["continuity"].get("ok") else "NO"),
            )
        )
    return "\n".join(lines) + "\n"
