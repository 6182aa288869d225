#!/usr/bin/python
# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: drill_report
short_description: Write a failover drill's report (JSON, Markdown, PNG timeline) and its verdict
version_added: 0.6.0
description:
  - "Reads the load generator's result (M(qwen3vl.ha.load_generator)'s O(qwen3vl.ha.load_generator#module:results_path))
    and the times the drill noted (O(events)), and writes C(<out_dir>/<name>.json), C(<name>.md) and
    C(<name>.png): what users saw before, during and after the fault."
  - "Failed requests are split into those in flight at the fault (started before the injecting command
    ended, ended after it started), those started after it but before the service reacted (O(events)
    C(detected)), and new ones (started after that); see C(plugins/module_utils/drill_report.py) for every
    definition."
  - "The verdict compares the numbers with O(thresholds). The module does not fail on a broken
    threshold: it returns C(passed) and C(failures), so the drill can restore, report and then fail."
  - "With O(summary=true) it reads every C(*.json) report in O(out_dir) instead and writes
    C(<out_dir>/summary.md), one table across the drills."
  - "Runs on the controller (C(delegate_to: localhost)); the PNG needs matplotlib (requirements.txt)."
author:
  - qwen3vl.ha developers (@qwen3vl)
options:
  name:
    description: The drill's short name, used for the file names (letters, digits, C(_) and C(-)).
    type: str
  title:
    description: A human title for the report.
    type: str
  fault:
    description: What was broken and how, in words.
    type: str
    default: ""
  target:
    description: The host or instance broken.
    type: str
    default: ""
  results_path:
    description: The load generator's JSON result.
    type: path
  events:
    description:
      - Wall-clock times (seconds since the epoch, controller clock) of
        C(inject_start), C(inject_end) (required), C(detected), C(recovered), C(restored), C(load_start), C(load_end)
        (optional; by default the load starts with its first request and ends with the start of its last).
    type: dict
  rotation:
    description:
      - "Per load balancer: C(out_since) and C(back_since), the checker's times of the broken server's changes, and
        C(out_applied), when that load balancer's nginx was seen serving without it (optional)."
    type: dict
    default: {}
  vip:
    description: C(before) and C(after), the host that held the VIP.
    type: dict
    default: {}
  continuity:
    description: The session continuity check, C(ok) (bool) and C(detail).
    type: dict
  bounds:
    description: The bounds the settings imply, with how they were derived, for the report.
    type: dict
    default: {}
  thresholds:
    description:
      - C(max_new_failures), C(max_in_flight_failures), C(max_detection_failures), C(max_first_success_s),
        C(max_longest_gap_s), C(max_leave_rotation_s), C(max_recover_s) (null or absent = not checked),
        C(continuity) (bool).
    type: dict
    default: {}
  out_dir:
    description: Where the report files go (created when missing).
    type: path
    required: true
  summary:
    description: Write C(summary.md) from the reports in O(out_dir) instead of one drill's report.
    type: bool
    default: false
  order:
    description: With O(summary), the drill names in the order of the table (others follow by name).
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Report what users saw
  qwen3vl.ha.drill_report:
    name: vllm_killed
    title: vLLM killed
    fault: docker kill qwen3vl-vllm-0 on gpu1
    results_path: /tmp/drills/vllm_killed.load.json
    events: "{{ drill_events }}"
    thresholds: {max_new_failures: 0, max_recover_s: 60}
    out_dir: /tmp/drills
  delegate_to: localhost
  register: report

- name: The drill fails when a threshold is broken
  ansible.builtin.assert:
    that: report.passed
    fail_msg: "{{ report.failures }}"
"""

RETURN = r"""
passed:
  description: Whether every threshold held.
  returned: success
  type: bool
failures:
  description: One message per broken threshold, naming it.
  returned: success
  type: list
  elements: str
report:
  description: The report (as in the JSON file), without the per-request records.
  returned: success, not with O(summary)
  type: dict
files:
  description: The files written.
  returned: success
  type: dict
"""

import json
import os
import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.qwen3vl.ha.plugins.module_utils import drill_plot
from ansible_collections.qwen3vl.ha.plugins.module_utils import drill_report as core
from ansible_collections.qwen3vl.ha.plugins.module_utils.model_checksum import write_atomic

NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def write_drill(module, out_dir):
    params = module.params
    for required in ("name", "results_path", "events"):
        if not params[required]:
            module.fail_json(msg="drill_report: %s is required for a drill's report" % required)
    if not NAME.fullmatch(params["name"]):
        module.fail_json(msg="drill_report: name must match [A-Za-z0-9_-]{1,64}, got %r" % params["name"])
    events = {key: float(value) for key, value in params["events"].items() if value not in (None, "")}
    missing = [key for key in ("inject_start", "inject_end") if key not in events]
    if missing:
        module.fail_json(msg="drill_report: events lacks %s" % ", ".join(missing))
    try:
        with open(params["results_path"], encoding="utf-8") as handle:
            records = json.load(handle)["records"]
    except (OSError, ValueError, KeyError) as exc:
        module.fail_json(msg="drill_report: cannot read the load result %s: %s" % (params["results_path"], exc))
    if not records:
        module.fail_json(msg="drill_report: the load result %s has no requests" % params["results_path"])
    events.setdefault("load_start", min(r["start"] for r in records))
    # the load ends when it stops starting requests (a request cut by the fault may hang until its timeout)
    events.setdefault("load_end", max(r["start"] for r in records))
    context = {key: params[key] for key in ("title", "fault", "target", "rotation", "vip", "continuity", "bounds")}
    context["drill"] = params["name"]
    context["title"] = params["title"] or params["name"]
    report = core.evaluate(records, events, context, params["thresholds"])
    base = os.path.join(out_dir, params["name"])
    files = {"json": base + ".json", "md": base + ".md"}
    png = None
    if drill_plot.HAS_MATPLOTLIB:
        png = drill_plot.plot(report, records, base + ".png")
        files["png"] = png
    else:
        module.warn("matplotlib is not installed on the controller: no PNG timeline (pip install -r requirements.txt)")
    write_atomic(files["json"], json.dumps(report, indent=2, sort_keys=True) + "\n", 0o644)
    write_atomic(files["md"], core.markdown(report, os.path.basename(png) if png else None), 0o644)
    module.exit_json(changed=True, passed=report["passed"], failures=report["failures"], report=report, files=files)


def write_summary(module, out_dir):
    reports = []
    for entry in sorted(os.listdir(out_dir)):
        if entry.endswith(".json") and not entry.endswith(".load.json"):
            with open(os.path.join(out_dir, entry), encoding="utf-8") as handle:
                data = json.load(handle)
            if "drill" in data and "passed" in data:
                reports.append(data)
    order = module.params["order"]
    reports.sort(key=lambda r: (order.index(r["drill"]) if r["drill"] in order else len(order), r["drill"]))
    path = os.path.join(out_dir, "summary.md")
    write_atomic(path, core.summary(reports), 0o644)
    failures = ["%s: %s" % (r["drill"], "; ".join(r["failures"])) for r in reports if not r["passed"]]
    module.exit_json(changed=True, passed=not failures and bool(reports), failures=failures, files={"md": path})


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str"),
            title=dict(type="str"),
            fault=dict(type="str", default=""),
            target=dict(type="str", default=""),
            results_path=dict(type="path"),
            events=dict(type="dict"),
            rotation=dict(type="dict", default={}),
            vip=dict(type="dict", default={}),
            continuity=dict(type="dict"),
            bounds=dict(type="dict", default={}),
            thresholds=dict(type="dict", default={}),
            out_dir=dict(type="path", required=True),
            summary=dict(type="bool", default=False),
            order=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=False,
    )
    out_dir = module.params["out_dir"]
    os.makedirs(out_dir, exist_ok=True)
    if module.params["summary"]:
        write_summary(module, out_dir)
    else:
        write_drill(module, out_dir)


if __name__ == "__main__":
    main()
