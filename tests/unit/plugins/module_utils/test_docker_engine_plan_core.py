"""docker_engine_plan core: every check of the role's preflight fires on bad input, naming the variable,
and stays quiet on good input."""

import pytest

from ansible_collections.qwen3vl.ha.plugins.module_utils import docker_engine_plan as core

GOOD = {
    "source": "docker",
    "daemon_defaults": {"log-driver": "json-file", "log-opts": {"max-size": "50m", "max-file": "5"}},
    "daemon_options": {"live-restore": True},
    "daemon_extra_keys": [],
    "registry_mirrors": ["https://mirror.example.internal", "http://10.0.0.5:5000"],
    "insecure_registries": [],
    "repo_url": "https://download.docker.com/linux/debian",
    "repo_key_url": "https://download.docker.com/linux/debian/gpg",
    "repo_key_content": "",
    "version": "5:27.3.1-1~debian.12~bookworm",
}


def plan(**changes):
    return core.plan(dict(GOOD, **changes))


def test_good_settings_have_no_errors_or_warnings():
    assert plan() == {"errors": [], "warnings": []}


def test_missing_keys_are_not_checked():
    assert core.plan({}) == {"errors": [], "warnings": []}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"daemon_options": {"log-opts": {"max-file": 3}}},
            "docker_engine_daemon_options['log-opts']['max-file']: expected a string, got int 3",
        ),
        (
            {"daemon_defaults": {"live-restore": "yes"}},
            "docker_engine_daemon_defaults['live-restore']: expected a boolean, got str 'yes'",
        ),
        (
            {"daemon_options": {"hosts": ["tcp://0.0.0.0:2375"]}},
            "docker_engine_daemon_options['hosts']: this key is refused",
        ),
        (
            {"daemon_options": {"live-restor": True}},
            "docker_engine_daemon_options['live-restor']: unknown daemon.json key",
        ),
        ({"daemon_options": ["live-restore"]}, "docker_engine_daemon_options: expected a mapping"),
        (
            {"registry_mirrors": ["mirror.example.internal"]},
            "docker_engine_registry_mirrors: mirror.example.internal is not an http(s) URL",
        ),
        ({"registry_mirrors": ["ftp://mirror.example"]}, "docker_engine_registry_mirrors: ftp://mirror.example is not"),
        ({"registry_mirrors": "https://mirror.example"}, "docker_engine_registry_mirrors: must be a list of strings"),
        ({"daemon_extra_keys": "x-new"}, "docker_engine_daemon_extra_keys: must be a list of strings"),
        (
            {"repo_url": "download.docker.com/linux/debian"},
            "docker_engine_repo_url: 'download.docker.com/linux/debian' is not an http:// or https:// or file:// URL",
        ),
        (
            {"repo_key_url": "ftp://example/gpg"},
            "docker_engine_repo_key_url: 'ftp://example/gpg' is not an http:// or https:// or file:// URL "
            "(or set docker_engine_repo_key_content)",
        ),
        ({"version": "27.3 latest"}, "docker_engine_version: '27.3 latest' is not an apt version string"),
    ],
)
def test_each_check_fires_naming_the_variable(changes, message):
    errors = plan(**changes)["errors"]
    assert len(errors) == 1, errors
    assert message in errors[0]
    assert errors[0].startswith(message.split(":")[0].split("[")[0])


def test_extra_keys_let_an_unknown_daemon_key_through():
    assert plan(daemon_options={"x-new": 1}, daemon_extra_keys=["x-new"])["errors"] == []


def test_file_urls_and_key_content_are_accepted():
    result = plan(repo_url="file:///srv/mirror/docker", repo_key_url="not a url", repo_key_content="-----BEGIN PGP")
    assert result["errors"] == []


def test_repository_settings_are_only_read_for_docker_s_repository():
    bad = {"repo_url": "nope", "repo_key_url": "nope", "version": "a b"}
    assert plan(source="distribution", **bad)["errors"] == []
    assert len(plan(source="docker", **bad)["errors"]) == 3


def test_every_problem_is_reported_at_once():
    errors = plan(daemon_options={"hosts": []}, registry_mirrors=["x"], repo_url="y")["errors"]
    assert [e.split("[")[0].split(":")[0] for e in errors] == [
        "docker_engine_daemon_options",
        "docker_engine_registry_mirrors",
        "docker_engine_repo_url",
    ]


def test_warning_for_a_version_the_distribution_source_ignores():
    assert plan(source="distribution")["warnings"] == [
        "docker_engine_version: '5:27.3.1-1~debian.12~bookworm' is ignored, because docker_engine_source is "
        "distribution (the distribution's packages are installed at their newest version)"
    ]
    assert plan(source="distribution", version="")["warnings"] == []


def test_warning_for_mirrors_set_in_two_places():
    warnings = plan(daemon_options={"registry-mirrors": ["https://a"], "insecure-registries": ["b:5000"]})["warnings"]
    assert warnings == [
        "docker_engine_daemon_options: 'registry-mirrors' is replaced by docker_engine_registry_mirrors; "
        "set it in one place"
    ]
    assert plan(daemon_options={"insecure-registries": ["b:5000"]}, insecure_registries=["c:5000"])["warnings"] == [
        "docker_engine_daemon_options: 'insecure-registries' is replaced by docker_engine_insecure_registries; "
        "set it in one place"
    ]
