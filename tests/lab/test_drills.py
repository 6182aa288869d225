"""The failover drills on the lab (playbooks/drills), as a user runs them. Runs on the lab the lab stage left up
(tools/test.sh sets QWEN3VL_KEEP_LAB=1 there and runs this stage alone, after the others: the load balancer drills
time the VIP's move in tenths of a second), or brings one up itself; takes it down at the end."""

import json
import shutil

import pytest
from labutil import REPO, all_in_rotation, in_host, lab_is_up, lab_leftovers, rotation, sh

DRILLS = REPO / ".cache" / "drill-reports"
DRILL_NAMES = (
    "vllm_killed",
    "vllm_hung",
    "webui_killed",
    "gpu_unhealthy",
    "gpu_host_down",
    "corrupted_weights",
    "nfs_restarted",
    "nginx_down",
    "master_lb_down",
)


def test_every_drill_passes_under_load_and_writes_its_reports(drill_lab):
    """playbooks/drills/all.yml on the lab, as a user runs it: each drill breaks something under load, restores it,
    and its thresholds hold (0 failed requests started after the service reacted, leave and recovery within the
    bounds the checker's settings give, session continuity, first success through the VIP within 0.5 s)."""
    shutil.rmtree(DRILLS, ignore_errors=True)
    rc, out = sh(
        ".venv/bin/ansible-playbook",
        "-i",
        "inventories/lab",
        "playbooks/drills/all.yml",
        "-e",
        f"drill_out_dir={DRILLS}",
    )
    summary = (DRILLS / "summary.md").read_text() if (DRILLS / "summary.md").exists() else "(no summary)"
    print("\n" + summary)
    assert rc == 0, failed_reports() + out[-4000:]
    for name in DRILL_NAMES:
        report = json.loads((DRILLS / f"{name}.json").read_text())
        assert report["passed"] and report["failed"]["new"] == 0, report["failures"]
        assert "**PASSED**" in (DRILLS / f"{name}.md").read_text()
        png = (DRILLS / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10000
    for name in ("webui_killed", "gpu_unhealthy", "gpu_host_down", "nfs_restarted"):
        assert json.loads((DRILLS / f"{name}.json").read_text())["continuity"]["ok"] is True, name
    lb = json.loads((DRILLS / "master_lb_down.json").read_text())["vip"]
    assert lb["before"] != lb["after"], lb


def test_a_drill_whose_threshold_is_broken_fails_and_still_restores(drill_lab):
    """The same vLLM drill with a recovery limit no restart can meet: the drill fails, names the threshold, writes its
    report, and has restored the instance (running, and in rotation on both load balancers) before it ends."""
    rc, out = sh(
        ".venv/bin/ansible-playbook",
        "-i",
        "inventories/lab",
        "playbooks/drills/vllm_killed.yml",
        "-e",
        f"drill_out_dir={DRILLS}",
        "-e",
        '{"drill_thresholds": {"max_new_failures": 0, "max_recover_s": 0.5}}',
    )
    assert rc != 0, out[-3000:]
    report = json.loads((DRILLS / "vllm_killed.json").read_text())
    assert not report["passed"] and any("drill_thresholds.max_recover_s" in f for f in report["failures"]), report
    assert "**FAILED**" in (DRILLS / "vllm_killed.md").read_text()
    assert "running" in in_host("gpu1", "docker inspect --format '{{.State.Status}}' qwen3vl-vllm-0")[1]
    for lb in ("lb1", "lb2"):
        assert all_in_rotation(lb, "gpu1"), rotation(lb, "gpu1")


def failed_reports():
    """What a failed drill's report says about its failures (the failed requests, when the service reacted), to
    read in CI's log without the report files."""
    lines = []
    for path in sorted(DRILLS.glob("*.json")):
        report = json.loads(path.read_text())
        if isinstance(report, dict) and report.get("passed") is False:
            keep = ("failures", "failed", "events", "leave_rotation_s", "nginx_without_it_s", "new_failures")
            lines.append("%s: %s" % (path.stem, json.dumps({k: report.get(k) for k in keep}, sort_keys=True)))
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def drill_lab():
    if not lab_is_up():
        rc, out = sh("tools/lab.sh", "up")
        assert rc == 0, out[-4000:]
    yield
    rc_down, out_down = sh("tools/lab.sh", "down")
    assert rc_down == 0, out_down
    assert lab_leftovers() == [], "lab down left containers, networks or the share volume behind"
