"""The drill_report module run as Ansible runs it (module_runner): it reads a load result, writes the JSON,
Markdown and PNG report, returns the verdict without failing, and writes the summary across drills."""

import json

from module_runner import run_module as run_any


def run_module(args):
    return run_any("qwen3vl.ha.drill_report", args)


def rec(start, end, ok=True, error=None):
    return {
        "id": int(start * 1000),
        "kind": "api",
        "start": start,
        "end": end,
        "ok": ok,
        "error": error,
        "e2el": end - start,
        "ttft": 0.02 if ok else None,
        "itl": [0.02],
        "output_tokens": 2 if ok else 0,
        "backend": "gpu2",
        "status": 200 if ok else None,
    }


def load_file(tmp_path, failing_after=False):
    t0 = 1000.0
    records = [rec(t0 + i * 0.25, t0 + i * 0.25 + 0.2) for i in range(60)]
    records.append(rec(t0 + 5.05, t0 + 5.2, ok=False, error="stream_cut"))  # in flight at the fault
    if failing_after:
        records.append(rec(t0 + 8, t0 + 8.01, ok=False, error="refused"))
    path = tmp_path / "drill.load.json"
    path.write_text(json.dumps({"config": {}, "records": records}))
    return str(path)


def args(tmp_path, name, **more):
    return {
        "name": name,
        "title": name.replace("_", " "),
        "results_path": load_file(tmp_path, failing_after=more.pop("failing_after", False)),
        "events": {"inject_start": 1005.1, "inject_end": 1005.15, "recovered": 1007.0, "restored": None},
        "rotation": {"lb1": {"out_since": 1005.4, "back_since": 1007.0}},
        "thresholds": {"max_new_failures": 0, "max_recover_s": 5},
        "out_dir": str(tmp_path / "reports"),
        **more,
    }


def test_writes_the_three_files_and_passes(tmp_path):
    res = run_module(args(tmp_path, "vllm_killed"))
    assert res.get("failed") is not True, res
    assert res["passed"] is True and res["failures"] == []
    files = res["files"]
    report = json.loads(open(files["json"]).read())
    assert report["failed"] == {"before": 0, "in_flight": 1, "detection": 0, "new": 0}
    assert report["recover_s"] == 1.85 and report["leave_rotation_s"] == {"lb1": 0.25}
    assert "**PASSED**" in open(files["md"]).read()
    png = open(files["png"], "rb").read()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10000


def test_a_broken_threshold_is_returned_not_raised_and_the_summary_says_so(tmp_path):
    assert run_module(args(tmp_path, "webui_killed"))["passed"] is True
    res = run_module(args(tmp_path, "vllm_killed", failing_after=True))
    assert res.get("failed") is not True and res["passed"] is False
    assert res["failures"] == [
        "drill_thresholds.max_new_failures: failed requests started after the service had reacted to the fault was 1, over the limit 0"
    ]
    summary = run_module(
        {"summary": True, "order": ["webui_killed", "vllm_killed"], "out_dir": str(tmp_path / "reports")}
    )
    assert summary["passed"] is False and summary["failures"][0].startswith("vllm_killed: ")
    lines = open(summary["files"]["md"]).read().splitlines()
    assert lines[2].startswith("| webui killed | pass |") and lines[3].startswith("| vllm killed | **FAIL** |")


def test_bad_input_fails_with_a_message(tmp_path):
    res = run_module(dict(args(tmp_path, "x"), events={"inject_start": 1}))
    assert res["failed"] and "events lacks inject_end" in res["msg"]
    res = run_module(dict(args(tmp_path, "../evil")))
    assert res["failed"] and "name must match" in res["msg"]
