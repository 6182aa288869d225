import pytest

from ansible_collections.qwen3vl.ha.plugins.module_utils import docker_daemon as dd


def test_valid_settings_have_no_errors():
    settings = {
        "log-driver": "json-file",
        "log-opts": {"max-size": "50m", "max-file": "5"},
        "live-restore": True,
        "registry-mirrors": ["https://mirror.example.internal"],
        "runtimes": {"nvidia": {"path": "nvidia-container-runtime", "runtimeArgs": []}},
        "default-address-pools": [{"base": "10.200.0.0/16", "size": 24}],
        "mtu": 1450,
    }
    assert dd.validate(settings) == []


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"log-opts": {"max-file": 3}}, "x['log-opts']['max-file']: expected a string, got int 3"),
        ({"live-restore": "yes"}, "x['live-restore']: expected a boolean, got str 'yes'"),
        ({"mtu": True}, "x['mtu']: expected an integer, got bool True"),
        ({"registry-mirrors": "https://m"}, "x['registry-mirrors']: expected a list, got str 'https://m'"),
        ({"registry-mirrors": ["https://m", 5]}, "x['registry-mirrors'][1]: expected a string, got int 5"),
        ({"hosts": ["unix:///run/docker.sock"]}, "x['hosts']: this key is refused"),
        ({"live-restor": True}, "x['live-restor']: unknown daemon.json key"),
        ({"log-level": "verbose"}, "x['log-level']: must be one of debug, info, warn, error, fatal"),
        ({"runtimes": {"nvidia": {"runtimeArgs": []}}}, "x['runtimes']['nvidia']: needs a 'path' string"),
    ],
)
def test_each_problem_is_reported_with_the_variable_name(settings, message):
    errors = dd.validate(settings, where="x")
    assert len(errors) == 1
    assert errors[0].startswith(message)


def test_non_mapping_is_refused():
    assert dd.validate(["live-restore"], where="v") == ["v: expected a mapping of daemon.json keys, got list"]


def test_extra_keys_allow_an_unknown_key():
    assert dd.validate({"new-flag": 1}, allowed_extra_keys=("new-flag",)) == []


def test_merge_keeps_foreign_keys_and_merges_mappings():
    base = {"labels": ["a"], "runtimes": {"nvidia": {"path": "n"}}, "log-opts": {"max-size": "1m", "tag": "t"}}
    overlay = {"runtimes": {"other": {"path": "o"}}, "log-opts": {"max-size": "50m"}, "labels": ["b"]}
    merged = dd.merge(base, overlay)
    assert merged == {
        "labels": ["b"],  # lists are replaced, not appended
        "runtimes": {"nvidia": {"path": "n"}, "other": {"path": "o"}},
        "log-opts": {"max-size": "50m", "tag": "t"},
    }
    assert base["runtimes"] == {"nvidia": {"path": "n"}}, "merge must not modify its input"


def test_changed_keys_and_restart_decision():
    before = {"live-restore": True, "labels": ["a"], "mtu": 1500}
    after = {"live-restore": True, "labels": ["b"], "registry-mirrors": ["https://m"]}
    keys = dd.changed_keys(before, after)
    assert keys == ["labels", "mtu", "registry-mirrors"]
    assert dd.needs_restart(keys) is True  # mtu needs a restart
    assert dd.needs_restart(["labels", "registry-mirrors", "runtimes"]) is False
    assert dd.needs_restart([]) is False
    # a reload keeps a deleted key's old value, so removing even a reloadable key needs a restart
    assert dd.needs_restart(["default-runtime"], removed=["default-runtime"]) is True


def test_parse_and_render():
    assert dd.parse("") == {}
    assert dd.parse('{"a": 1}') == {"a": 1}
    with pytest.raises(ValueError, match="not valid JSON"):
        dd.parse("{oops")
    with pytest.raises(ValueError, match="must hold a JSON object"):
        dd.parse("[1]")
    assert dd.render({"b": 1, "a": {"d": 2, "c": 3}}) == '{\n  "a": {\n    "c": 3,\n    "d": 2\n  },\n  "b": 1\n}\n'
