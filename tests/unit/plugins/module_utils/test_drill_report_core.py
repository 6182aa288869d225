"""drill_report's core: how failed requests are split around a fault, the verdict against the thresholds,
and the Markdown. Hand-built records (the load generator's record shape) with known answers."""

import pytest

from ansible_collections.qwen3vl.ha.plugins.module_utils import drill_report as core

T = 1000.0  # the fault lands between T and T + 0.1 (inject_start, inject_end)
EVENTS = {"load_start": T - 5, "load_end": T + 10, "inject_start": T, "inject_end": T + 0.1}
CONTEXT = {"drill": "vllm_killed", "title": "vLLM killed", "fault": "kill", "target": "gpu1"}


def rec(start, end, ok=True, error=None, kind="api"):
    return {
        "kind": kind,
        "start": start,
        "end": end,
        "ok": ok,
        "error": error,
        "e2el": end - start,
        "ttft": None,
        "itl": [],
        "output_tokens": 3 if ok else 0,
        "backend": "gpu2",
        "status": 200 if ok else None,
    }


def steady(start, end, step=0.25):
    """Successful requests back to back from start to end, one every ``step`` seconds."""
    out, t = [], start
    while t < end:
        out.append(rec(t, t + 0.2))
        t += step
    return out


def test_failures_are_split_into_before_in_flight_detection_and_new():
    records = steady(T - 5, T + 10) + [
        rec(T - 3, T - 2.9, ok=False, error="http_500"),  # before
        rec(T - 0.2, T + 0.05, ok=False, error="stream_cut"),  # in flight: ended inside the fault window
        rec(T + 0.05, T + 0.3, ok=False, error="reset"),  # started before inject_end: in flight
        rec(T + 0.2, T + 0.25, ok=False, error="http_502"),  # after the fault, before detected
        rec(T + 0.6, T + 0.61, ok=False, error="refused"),  # after detected: new
    ]
    split = core.split_failures(records, T, T + 0.1, detected=T + 0.5)
    assert [len(split[k]) for k in ("before", "in_flight", "detection", "new")] == [1, 2, 1, 1]
    # without a detection time the window is empty and both later failures are new
    split = core.split_failures(records, T, T + 0.1)
    assert len(split["detection"]) == 0 and len(split["new"]) == 2


def test_at_an_instant_fault_failures_split_into_before_in_flight_and_new():
    """(Moved here from loadgen's split_at, which it replaces: inject_start = inject_end, no detection window.)"""
    records = [
        rec(8.0, 9.0, ok=False, error="http_503"),  # failed and over before the fault
        rec(9.0, 10.5, ok=False, error="stream_cut"),  # in flight at 10
        rec(9.5, 10.2, ok=False, error="reset"),  # in flight at 10
        rec(9.0, 11.0),  # in flight but it succeeded: not a failure
        rec(10.0, 10.0, ok=False, error="refused"),  # started at the fault: new
        rec(12.0, 12.1, ok=False, error="refused"),
    ]
    split = core.split_failures(records, 10.0, 10.0)
    assert (len(split["in_flight"]), len(split["new"]), len(split["before"])) == (2, 2, 1)
    assert [r["error"] for r in split["in_flight"]] == ["stream_cut", "reset"]
    assert [r["start"] for r in split["new"]] == [10.0, 12.0]
    assert core.split_failures([], 10.0, 10.0)["new"] == []
    early = core.split_failures(records, 1.0, 1.0)  # fault before the first request: every failure is new
    assert len(early["in_flight"]) == 0 and len(early["new"]) == 5 and len(early["before"]) == 0


def test_first_answer_of_unstreamed_requests_is_their_end():
    """(Moved here from loadgen's first_success_after: without a ttft the first answer is the request's end.)"""
    records = [rec(9.0, 10.5), rec(10.2, 10.9, ok=False), rec(10.4, 11.5), rec(10.3, 12.0)]
    assert core.first_answer_after(records, 10.0) == pytest.approx(1.5)  # started before 10 does not count
    assert core.first_answer_after(records, 0.0) == pytest.approx(10.5)  # fault before the first request
    assert core.first_answer_after(records, 11.0) is None
    assert core.first_answer_after([], 1.0) is None


def test_a_clean_drill_passes_with_its_numbers():
    records = steady(T - 5, T + 10)
    rotation = {
        "lb1": {"out_since": T + 0.3, "out_applied": T + 0.34, "back_since": T + 4},
        "lb2": {"out_since": T + 0.35, "out_applied": None, "back_since": T + 4.2},
    }
    events = dict(EVENTS, detected=T + 0.5, recovered=T + 4.2)
    thresholds = {"max_new_failures": 0, "max_leave_rotation_s": 1.0, "max_recover_s": 6}
    report = core.evaluate(records, events, dict(CONTEXT, rotation=rotation), thresholds)
    assert report["passed"] and report["failures"] == []
    assert report["leave_rotation_s"] == {"lb1": 0.2, "lb2": 0.25}
    assert report["left_rotation_s"] == 0.25  # the last load balancer to act
    assert report["nginx_without_it_s"] == {"lb1": 0.24}  # lb2's nginx was not seen taking it
    assert report["reacted_s"] == 0.4  # detected, from the fault (inject_end)
    assert "| nginx served without it after | lb1 0.24 s |" in core.markdown(report)
    assert "| 0.25 | 0.4 | 4.1 |" in core.summary([report])  # left rotation, reacted, whole again
    assert report["recover_s"] == 4.1
    assert report["windows"]["before"]["completed"] == 20 and report["windows"]["before"]["failed"] == 0
    # the first request started at or after inject_end (T + 0.25) ends 0.2 s later
    assert report["first_success_after_fault_s"] == pytest.approx(0.35, abs=1e-3)


@pytest.mark.parametrize(
    ("thresholds", "extra", "expected"),
    [
        (
            {"max_new_failures": 0},
            [rec(T + 1, T + 1.1, ok=False, error="refused")],
            "max_new_failures: failed requests",
        ),
        ({"max_detection_failures": 0}, [rec(T + 0.2, T + 0.3, ok=False, error="http_502")], "max_detection_failures"),
        (
            {"max_recover_s": 3},
            [],
            "max_recover_s: seconds until the service was whole again was 4.1, over the limit 3",
        ),
        (
            {"max_leave_rotation_s": 0.1},
            [],
            "max_leave_rotation_s: seconds until the broken instance left rotation was 0.25",
        ),
        ({"continuity": True}, [], "drill_thresholds.continuity: the session history was not read back (not checked)"),
    ],
)
def test_each_broken_threshold_fails_the_drill_and_names_itself(thresholds, extra, expected):
    rotation = {
        "lb1": {"out_since": T + 0.3, "back_since": T + 4},
        "lb2": {"out_since": T + 0.35, "back_since": T + 4.2},
    }
    events = dict(EVENTS, detected=T + 0.5, recovered=T + 4.2)
    report = core.evaluate(steady(T - 5, T + 10) + extra, events, dict(CONTEXT, rotation=rotation), thresholds)
    assert not report["passed"]
    assert any(expected in failure for failure in report["failures"]), report["failures"]


def test_a_gap_with_no_success_is_measured_and_limited():
    records = steady(T - 5, T) + steady(T + 1.5, T + 10)  # no success ends between T - 0.05 and T + 1.7
    report = core.evaluate(records, EVENTS, CONTEXT, {"max_longest_gap_s": 1.0, "max_first_success_s": 0.5})
    assert report["longest_gap_s"] == pytest.approx(1.75, abs=0.01)
    assert report["first_success_after_fault_s"] == pytest.approx(1.6, abs=0.01)
    assert len(report["failures"]) == 2


def test_an_unhealthy_start_fails_and_a_missing_recovery_is_named():
    records = steady(T - 5, T + 10) + [rec(T - 4, T - 3.9, ok=False, error="http_503")]
    report = core.evaluate(records, EVENTS, CONTEXT, {"max_recover_s": 60})
    assert "1 requests failed before the fault: the service was not healthy" in report["failures"]
    assert (
        "drill_thresholds.max_recover_s: seconds until the service was whole again never happened (limit 60)"
        in report["failures"]
    )


def test_markdown_and_summary_carry_the_verdict_and_numbers():
    report = core.evaluate(
        steady(T - 5, T + 10) + [rec(T + 1, T + 1.1, ok=False, error="refused")],
        EVENTS,
        dict(CONTEXT, continuity={"ok": True, "detail": "via A, read via B"}),
        {"max_new_failures": 0},
    )
    text = core.markdown(report, "vllm_killed.png")
    assert text.startswith("# Drill: vLLM killed\n\n**FAILED**")
    assert "| failed, started after that | 1 |" in text and "| failures by class | refused 1 |" in text
    assert "| session continuity | yes (via A, read via B) |" in text and "![timeline](vllm_killed.png)" in text
    table = core.summary([report])
    assert "| vLLM killed | **FAIL** | 61 | 0 | 0 | 1 |" in table


def test_the_first_answer_is_the_first_token_of_a_streamed_chat_not_its_end():
    streamed = dict(rec(T + 0.3, T + 0.6), ttft=0.05)  # first token at T + 0.35, done at T + 0.6
    whole = rec(T + 0.2, T + 0.5)  # a WebUI answer (no ttft): at its end, T + 0.5
    report = core.evaluate(steady(T - 5, T) + [streamed, whole], EVENTS, CONTEXT, {"max_first_success_s": 0.2})
    assert report["first_success_after_fault_s"] == pytest.approx(0.25, abs=1e-3)
    assert report["failures"] == [
        "drill_thresholds.max_first_success_s: seconds from the fault to the first answer of a request that succeeded "
        "was 0.25, over the limit 0.2"
    ]
