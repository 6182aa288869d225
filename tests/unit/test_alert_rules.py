# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The prometheus role's alert rules, their promtool tests and their runbook agree (no promtool needed).

The rules template is rendered as the role renders it (tests/rules/render.py) and read with PyYAML:
- every alert has a promtool case where it fires and one where it does not (the Watchdog, which always
  fires, excepted), and every case names an alert that exists;
- every alert has a severity (critical, warning or none) and a summary, description and runbook, the runbook
  pointing at its section in the role's RUNBOOK.md;
- the runbook (roles/prometheus/RUNBOOK.md) has a section for every alert and none for an alert that is gone;
- alert names are unique, and every threshold setting is used.
"""

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = ROOT / "roles" / "prometheus" / "RUNBOOK.md"
GROUPS = {"qwen3vl-service", "qwen3vl-gpu", "qwen3vl-lb", "qwen3vl-storage", "qwen3vl-hosts", "qwen3vl-monitoring"}
SEVERITIES = {"critical", "warning", "none"}
# Alerts that fire whatever the input: no promtool case can show them quiet.
ALWAYS_FIRING = {"Watchdog"}


def _load_render():
    spec = importlib.util.spec_from_file_location("qwen3vl_rules_render", ROOT / "tests" / "rules" / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = _load_render()


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("rules")
    path = render.render(out)
    assert path == out / "qwen3vl.rules.yml"
    rules = yaml.safe_load(path.read_text())
    tests = yaml.safe_load((out / "qwen3vl.rules.test.yml").read_text())
    return rules, tests


@pytest.fixture(scope="module")
def alerts(rendered):
    rules, _tests = rendered
    return [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


@pytest.fixture(scope="module")
def cases(rendered):
    """(alertname, eval_time, exp_alerts or None) for every alert_rule_test entry."""
    _rules, tests = rendered
    return [
        (case["alertname"], case["eval_time"], case.get("exp_alerts"))
        for test in tests["tests"]
        for case in test.get("alert_rule_test") or []
    ]


def test_render_uses_every_threshold_and_leaves_no_jinja():
    template = render.TEMPLATE.read_text()
    for name in render.FALLBACK:
        assert "[[ %s ]]" % name in template, "%s is not used by the template" % name
    text = render.render_text()
    assert "[[" not in text and "]]" not in text
    assert "{{ $labels.host }}" in text, "Prometheus' own templating must stay as it is"


def test_fallback_matches_the_role_defaults_where_it_has_them():
    defaults = yaml.safe_load(render.ROLE_DEFAULTS.read_text()) if render.ROLE_DEFAULTS.is_file() else {}
    for name, value in render.FALLBACK.items():
        if name in (defaults or {}):
            assert defaults[name] == value, "%s: the role's default %r, the tests are written for %r" % (
                name,
                defaults[name],
                value,
            )


def test_groups_and_rule_file(rendered):
    rules, tests = rendered
    assert {group["name"] for group in rules["groups"]} == GROUPS
    assert tests["rule_files"] == ["qwen3vl.rules.yml"]


def test_alert_names_are_unique(alerts):
    names = [alert["alert"] for alert in alerts]
    assert sorted({n for n in names if names.count(n) > 1}) == []


def test_every_alert_has_severity_and_annotations(alerts):
    for alert in alerts:
        name = alert["alert"]
        assert (alert.get("labels") or {}).get("severity") in SEVERITIES, name
        annotations = alert.get("annotations") or {}
        for key in ("summary", "description", "runbook"):
            assert str(annotations.get(key) or "").strip(), "%s has no %s" % (name, key)
        assert annotations["runbook"] == "roles/prometheus/RUNBOOK.md#%s" % name.lower(), name


def test_every_alert_fires_in_a_case_and_stays_quiet_in_another(alerts, cases):
    names = {alert["alert"] for alert in alerts}
    unknown = sorted({name for name, _time, _exp in cases} - names)
    assert unknown == [], "test cases for alerts that do not exist: %s" % unknown
    firing = {name for name, _time, exp in cases if exp}
    quiet = {name for name, _time, exp in cases if exp == []}
    assert sorted(names - firing) == [], "alerts never seen firing"
    assert sorted(names - ALWAYS_FIRING - quiet) == [], "alerts never seen quiet (exp_alerts: [])"


def test_expected_alerts_carry_the_rule_severity(alerts, cases):
    severity = {alert["alert"]: alert["labels"]["severity"] for alert in alerts}
    for name, time, exp in cases:
        for expected in exp or []:
            labels = expected.get("exp_labels") or {}
            assert labels.get("severity") == severity[name], "%s at %s" % (name, time)


def test_the_runbook_has_a_section_per_alert(alerts):
    headings = re.findall(r"^### (\S+)\s*$", RUNBOOK.read_text(), flags=re.MULTILINE)
    names = [alert["alert"] for alert in alerts]
    assert sorted(set(names) - set(headings)) == [], "alerts without a runbook section"
    assert sorted(set(headings) - set(names)) == [], "runbook sections without an alert"
    assert len(headings) == len(set(headings)), "a runbook section appears twice"
