import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.qwen3vl.ha.plugins.filter.docker_daemon_errors import FilterModule


def test_filter_is_registered_and_names_the_variable():
    f = FilterModule().filters()["docker_daemon_errors"]
    assert f({"live-restore": True}, "docker_engine_daemon_options") == []
    assert f({"hosts": []}, "docker_engine_daemon_options")[0].startswith("docker_engine_daemon_options['hosts']")
    assert f({"x-new": 1}, "v", ["x-new"]) == []


def test_filter_rejects_bad_extra_keys_argument():
    f = FilterModule().filters()["docker_daemon_errors"]
    with pytest.raises(AnsibleFilterError):
        f({}, "v", "x-new")
