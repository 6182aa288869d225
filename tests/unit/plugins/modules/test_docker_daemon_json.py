"""Runs the real module through ansible (local connection) on files in a temp directory."""

import json
import os

import pytest
from module_runner import run_module as run_any


def run_module(args, check=False, diff=False):
    return run_any("qwen3vl.ha.docker_daemon_json", args, check=check, diff=diff)


@pytest.fixture
def path(tmp_path):
    return tmp_path / "docker" / "daemon.json"


def test_creates_file_then_is_idempotent(path):
    res = run_module({"path": str(path), "settings": {"live-restore": True}})
    assert res["changed"] is True
    assert json.loads(path.read_text()) == {"live-restore": True}
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert res["changed_keys"] == ["live-restore"]
    again = run_module({"path": str(path), "settings": {"live-restore": True}})
    assert again["changed"] is False


def test_merges_without_dropping_foreign_keys(path):
    path.parent.mkdir()
    path.write_text('{"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}, "labels": ["x"]}')
    res = run_module({"path": str(path), "settings": {"log-driver": "json-file", "runtimes": {"r2": {"path": "runc"}}}})
    assert res["changed"] is True
    cfg = json.loads(path.read_text())
    assert cfg["labels"] == ["x"]
    assert set(cfg["runtimes"]) == {"nvidia", "r2"}
    assert res["needs_restart"] is True  # log-driver is not reloadable


def test_reloadable_change_does_not_need_restart(path):
    res = run_module({"path": str(path), "settings": {"registry-mirrors": ["https://m.example.internal"]}})
    assert res["changed"] is True and res["needs_restart"] is False


def test_removing_a_reloadable_key_needs_a_restart(path):
    path.parent.mkdir()
    path.write_text('{"default-runtime": "nvidia", "labels": ["x"]}')
    res = run_module({"path": str(path), "settings": {}, "remove": ["default-runtime"]})
    assert res["changed"] is True and res["changed_keys"] == ["default-runtime"]
    assert res["needs_restart"] is True
    assert json.loads(path.read_text()) == {"labels": ["x"]}


def test_check_mode_writes_nothing_and_shows_diff(path):
    res = run_module({"path": str(path), "settings": {"live-restore": True}}, check=True, diff=True)
    assert res["changed"] is True
    assert not path.exists()
    assert '"live-restore": true' in res["diff"]["after"]


def test_remove_key(path):
    path.parent.mkdir()
    path.write_text('{"labels": ["x"], "debug": true}')
    res = run_module({"path": str(path), "remove": ["debug"]})
    assert res["changed"] is True
    assert json.loads(path.read_text()) == {"labels": ["x"]}


def test_bad_settings_fail_and_leave_file(path):
    path.parent.mkdir()
    path.write_text('{"labels": ["x"]}\n')
    res = run_module({"path": str(path), "settings": {"hosts": ["tcp://0.0.0.0:2375"]}})
    assert res.get("failed") is True
    assert "settings['hosts']: this key is refused" in res["msg"]
    assert path.read_text() == '{"labels": ["x"]}\n'


def test_existing_broken_file_is_reported_not_overwritten(path):
    path.parent.mkdir()
    path.write_text("{broken")
    res = run_module({"path": str(path), "settings": {"live-restore": True}})
    assert res.get("failed") is True and "not valid JSON" in res["msg"]
    assert path.read_text() == "{broken"


def test_failed_validation_keeps_old_file(path):
    path.parent.mkdir()
    path.write_text('{"labels": ["x"]}\n')
    res = run_module({"path": str(path), "settings": {"debug": True}, "validate_command": "false %s"})
    assert res.get("failed") is True and "old file is kept" in res["msg"]
    assert path.read_text() == '{"labels": ["x"]}\n'
    assert os.listdir(path.parent) == ["daemon.json"], "temporary file left behind"
    ok = run_module({"path": str(path), "settings": {"debug": True}, "validate_command": "python3 -m json.tool %s"})
    assert ok["changed"] is True and json.loads(path.read_text())["debug"] is True
