"""The boot gate's core (plugins/module_utils/instance_gate.py): configuration, mount table, checks, links,
the service loop and its CLI. Weights are verified for real (model_checksum on files written here); only the
docker CLI, the clock and the mount table are replaced."""

import hashlib
import json
import os
import subprocess

import pytest

from ansible_collections.qwen3vl.ha.plugins.module_utils import instance_gate as gate
from ansible_collections.qwen3vl.ha.plugins.module_utils import model_checksum

# Three real lines of /proc/self/mountinfo shapes: root, an NFS share with optional fields, a path with a
# space (octal escape), an automount trigger with the NFS share mounted over it, and one without.
MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
45 22 0:52 / /mnt/qwen3vl-data rw,relatime shared:30 - nfs4 storage1:/srv/qwen3vl/data rw,vers=4.1
46 22 0:53 / /mnt/with\\040space rw,relatime - tmpfs tmpfs rw
47 22 0:54 / /mnt/qwen3vl-models rw,relatime shared:31 - autofs systemd-1 rw,fd=50
48 47 0:55 / /mnt/qwen3vl-models ro,relatime shared:32 - nfs4 storage1:/srv/qwen3vl/models ro
49 22 0:56 / /mnt/auto-only rw,relatime shared:33 - autofs systemd-1 rw,fd=51
"""


def test_parse_mountinfo_reads_mount_point_and_type_in_order():
    table = gate.parse_mountinfo(MOUNTINFO + "garbage line\n")
    assert table[0] == ("/", "ext4")
    assert ("/mnt/with space", "tmpfs") in table
    assert table[3:5] == [("/mnt/qwen3vl-models", "autofs"), ("/mnt/qwen3vl-models", "nfs4")]
    assert len(table) == 6


@pytest.mark.parametrize(
    "paths, mounts, missing",
    [
        (["/mnt/qwen3vl-data/webui"], ["/mnt/qwen3vl-data"], []),
        (["/mnt/qwen3vl-data2/webui"], ["/mnt/qwen3vl-data"], []),  # a prefix of the name is not "under"
        (["/srv/models/x"], ["/mnt/qwen3vl-data"], []),  # a mount nothing lies under is not needed
        (["/mnt/qwen3vl-models/Qwen"], ["/mnt/qwen3vl-models"], []),  # NFS over its automount trigger
        (["/mnt/auto-only/x"], ["/mnt/auto-only"], ["/mnt/auto-only"]),  # the trigger alone is not the share
        (["/mnt/absent/webui", "/mnt/qwen3vl-data/x"], ["/mnt/absent", "/mnt/qwen3vl-data"], ["/mnt/absent"]),
        (["/mnt/absent"], ["/mnt/absent/"], ["/mnt/absent/"]),  # the directory itself, trailing slash
        (["/mnt/with space/x"], ["/mnt/with space"], []),
    ],
)
def test_missing_mounts(paths, mounts, missing):
    assert gate.missing_mounts(paths, mounts, gate.parse_mountinfo(MOUNTINFO)) == missing


def test_the_real_mount_table_of_this_machine_has_its_root():
    table = gate.parse_mountinfo(gate.read_mountinfo())
    assert "/" in [point for point, _fstype in table]
    assert gate.missing_mounts(["/etc"], ["/"], table) == []


def _config(tmp_path, **overrides):
    raw = {
        "gate_dir": str(tmp_path / "gate"),
        "state_file": str(tmp_path / "gate" / "state.json"),
        "textfile": str(tmp_path / "textfile"),
        "interval": 1,
        "mounts": [str(tmp_path / "share")],
        "checksum": {"cache_dir": str(tmp_path / "cache")},
        "instances": [
            {
                "id": "0",
                "model_dir": str(tmp_path / "models" / "m"),
                "data_dir": str(tmp_path / "share" / "webui"),
                "containers": ["qwen3vl-vllm-0", "qwen3vl-webui-0"],
            }
        ],
    }
    raw.update(overrides)
    return gate.load_config(raw)


def _model(tmp_path, corrupt=False):
    model = tmp_path / "models" / "m"
    model.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, data in (("config.json", b'{"model_type": "qwen3_vl"}'), ("model-00001.safetensors", b"x" * 4096)):
        (model / name).write_bytes(data)
        lines.append("%s  %s" % (hashlib.sha256(data).hexdigest(), name))
    (model / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    if corrupt:
        (model / "model-00001.safetensors").write_bytes(b"y" * 4096)
    (tmp_path / "share" / "webui").mkdir(parents=True, exist_ok=True)
    return model


def _mounted(tmp_path):
    return MOUNTINFO + "60 22 0:60 / %s rw - nfs4 storage1:/x rw\n" % (tmp_path / "share")


def test_load_config_fills_defaults_and_checks_everything(tmp_path):
    config = _config(tmp_path)
    assert config["checksum"]["extra_files"] == "warn" and config["checksum"]["cache"] is True
    assert config["instances"][0]["verify"] is True and config["instances"][0]["manifest"] == ""
    with pytest.raises(gate.ConfigError) as info:
        gate.load_config(
            {
                "gate_dir": "relative",
                "interval": 0,
                "surprise": 1,
                "mounts": ["/ok", "nope"],
                "checksum": {"workers": -1, "extra_files": "maybe", "colour": "red"},
                "instances": [
                    {"id": "0", "model_dir": "/m", "containers": ["ok", "bad name"]},
                    {"id": "0", "model_dir": "m2", "verify": "yes"},
                    "not a mapping",
                ],
            }
        )
    text = str(info.value)
    for fragment in (
        "unknown keys: surprise",
        "gate_dir: 'relative'",
        "interval: 0",
        "mounts[1]",
        "checksum.workers",
        "checksum.extra_files",
        "unknown option 'colour'",
        "instances[0].containers",
        "instances[1].model_dir",
        "instances[1].verify",
        "instances[2]",
        "ids used twice: 0",
    ):
        assert fragment in text, fragment
    with pytest.raises(gate.ConfigError, match="not a JSON object"):
        gate.load_config([])
    with pytest.raises(gate.ConfigError, match="instances: None is not a list"):
        gate.load_config({})


def test_an_instance_passes_when_its_mount_is_there_and_its_weights_verify(tmp_path):
    _model(tmp_path)
    config = _config(tmp_path)
    table = gate.parse_mountinfo(_mounted(tmp_path))
    assert gate.check_instance(config["instances"][0], config, table) == ("ok", "")
    # the second check reads the cache model_checksum wrote: nothing is hashed again
    cache_file = model_checksum.cache_file_for(str(tmp_path / "cache"), str(tmp_path / "models" / "m"))
    assert os.path.exists(cache_file)


def test_a_missing_mount_is_named_before_anything_else_is_looked_at(tmp_path):
    config = _config(tmp_path)  # no model directory at all: the mount is the first reason
    reason, detail = gate.check_instance(config["instances"][0], config, gate.parse_mountinfo(MOUNTINFO))
    assert reason == "mount_missing"
    assert detail == "not mounted: %s" % (tmp_path / "share")


def test_damaged_weights_hold_the_instance_back_with_the_file_named(tmp_path):
    _model(tmp_path, corrupt=True)
    config = _config(tmp_path)
    reason, detail = gate.check_instance(config["instances"][0], config, gate.parse_mountinfo(_mounted(tmp_path)))
    assert reason == "weights_bad"
    assert detail.startswith("1 of 2 files failed verification: model-00001.safetensors: sha256 ")


def test_no_manifest_and_a_missing_directory_are_reasons_too(tmp_path):
    model = _model(tmp_path)
    config = _config(tmp_path)
    table = gate.parse_mountinfo(_mounted(tmp_path))
    (model / "SHA256SUMS").unlink()
    assert gate.check_instance(config["instances"][0], config, table)[0] == "weights_unverifiable"
    (tmp_path / "share" / "webui").rmdir()
    reason, detail = gate.check_instance(config["instances"][0], config, table)
    assert (reason, str(tmp_path / "share" / "webui") in detail) == ("dir_missing", True)


def test_a_share_that_does_not_answer_is_reported_as_such(tmp_path):
    _model(tmp_path)
    config = _config(tmp_path)

    def hung(path, timeout):
        return "%s did not answer within %ss" % (path, timeout)

    reason, detail = gate.check_instance(
        config["instances"][0], config, gate.parse_mountinfo(_mounted(tmp_path)), stat=hung
    )
    assert reason == "mount_not_responding" and "within 10.0s" in detail


def test_stat_within_answers_for_real_paths(tmp_path):
    assert gate.stat_within(str(tmp_path), 5) is None
    assert "No such file" in gate.stat_within(str(tmp_path / "nope"), 5)


def test_verify_false_skips_the_weights(tmp_path):
    _model(tmp_path, corrupt=True)
    config = _config(tmp_path)
    config["instances"][0]["verify"] = False
    assert gate.check_instance(config["instances"][0], config, gate.parse_mountinfo(_mounted(tmp_path)))[0] == "ok"


def test_make_link_is_atomic_idempotent_and_repoints(tmp_path):
    link = str(tmp_path / "gate" / "0.model")
    assert gate.make_link(link, "/srv/a") is True
    assert os.readlink(link) == "/srv/a"
    assert gate.make_link(link, "/srv/a") is False
    assert gate.make_link(link, "/srv/b") is True
    assert os.readlink(link) == "/srv/b"
    assert sorted(os.listdir(tmp_path / "gate")) == ["0.model"]  # no temporary left behind


class FakeDocker:
    def __init__(self, fail=None):
        self.calls = []
        self.fail = fail or {}

    def __call__(self, argv, **kwargs):
        self.calls.append(argv)
        code, err = self.fail.get(argv[-1], (0, ""))
        return subprocess.CompletedProcess(argv, code, stdout=argv[-1] + "\n" if code == 0 else "", stderr=err)


def _gate(tmp_path, table_text, docker=None):
    lines = []
    tick = iter(range(1000, 2000))
    runner = gate.Gate(_config(tmp_path), log=lines.append, clock=lambda: float(next(tick)), sleep=lambda s: None)
    runner.mountinfo = lambda: table_text[0]
    runner.run = docker or FakeDocker()
    return runner, lines


def test_the_gate_holds_an_instance_back_until_its_mount_returns_then_starts_it(tmp_path):
    _model(tmp_path)
    table = [MOUNTINFO]
    runner, lines = _gate(tmp_path, table)
    assert runner.check_round() == 1
    assert runner.check_round() == 1  # same reason: logged once
    assert lines == ["instance 0: held back (mount_missing): not mounted: %s" % (tmp_path / "share")]
    assert runner.run.calls == []
    assert not os.path.lexists(tmp_path / "gate" / "0.model")
    state = json.loads((tmp_path / "gate" / "state.json").read_text())
    assert state["instances"]["0"]["reason"] == "mount_missing"
    prom = (tmp_path / "textfile" / "qwen3vl_instance_gate.prom").read_text()
    assert 'qwen3vl_instance_gate_open{instance="0",reason="mount_missing"} 0' in prom

    table[0] = _mounted(tmp_path)
    assert runner.check_round() == 0
    assert lines[-1] == "instance 0: open, containers started"
    assert os.readlink(tmp_path / "gate" / "0.model") == str(tmp_path / "models" / "m")
    assert os.readlink(tmp_path / "gate" / "0.data") == str(tmp_path / "share" / "webui")
    assert [argv[1:] for argv in runner.run.calls] == [["start", "qwen3vl-vllm-0"], ["start", "qwen3vl-webui-0"]]
    prom = (tmp_path / "textfile" / "qwen3vl_instance_gate.prom").read_text()
    assert 'qwen3vl_instance_gate_open{instance="0",reason="ok"} 1' in prom
    runner.check_round()  # an open instance is not checked or started again
    assert len(runner.run.calls) == 2


def test_run_until_open_sleeps_the_interval_between_rounds(tmp_path):
    _model(tmp_path)
    table = [MOUNTINFO]
    runner, _lines = _gate(tmp_path, table)
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        if len(slept) == 3:
            table[0] = _mounted(tmp_path)

    runner.sleep = sleep
    assert runner.run_until_open() == 0
    assert slept == [1, 1, 1]
    assert runner.run_until_open(once=True) == 0


def test_a_container_not_created_yet_is_no_problem_but_a_failed_start_is_retried(tmp_path):
    _model(tmp_path)
    docker = FakeDocker(
        fail={
            "qwen3vl-vllm-0": (1, "Error response from daemon: No such container: qwen3vl-vllm-0"),
            "qwen3vl-webui-0": (1, "Error response from daemon: driver failed programming external connectivity"),
        }
    )
    runner, lines = _gate(tmp_path, [_mounted(tmp_path)], docker)
    assert runner.check_round() == 1
    assert lines[-1] == (
        "instance 0: held back (start_failed): qwen3vl-webui-0: Error response from daemon: "
        "driver failed programming external connectivity"
    )
    docker.fail.pop("qwen3vl-webui-0")
    assert runner.check_round() == 0


def test_no_start_only_makes_the_links(tmp_path):
    _model(tmp_path)
    runner, _lines = _gate(tmp_path, [_mounted(tmp_path)])
    runner.start = False
    assert runner.check_round() == 0
    assert runner.run.calls == [] and os.path.islink(tmp_path / "gate" / "0.model")


def test_main_exit_codes(tmp_path, capsys):
    path = tmp_path / "gate.json"
    path.write_text(json.dumps({"instances": [{"id": "0", "model_dir": "relative"}]}))
    assert gate.main([str(path), "--check-config"]) == 2
    assert "instances[0].model_dir" in capsys.readouterr().err
    assert gate.main([]) == 2
    assert gate.main([str(path), "--bogus"]) == 2
    config = {
        "gate_dir": str(tmp_path / "gate"),
        "state_file": str(tmp_path / "gate" / "state.json"),
        "mounts": [str(tmp_path / "never-mounted")],
        "instances": [{"id": "0", "model_dir": str(tmp_path / "never-mounted" / "m"), "containers": []}],
    }
    path.write_text(json.dumps(config))
    assert gate.main([str(path), "--check-config"]) == 0
    assert gate.main([str(path), "--once"]) == 1
    assert "held back (mount_missing)" in capsys.readouterr().out
