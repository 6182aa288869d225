# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check the docker_engine role's settings on the controller, before anything on a host changes.

Pure Python (no Ansible imports): the filter plugin ``qwen3vl.ha.docker_engine_plan`` wraps it and unit
tests call it directly. The daemon.json type checks themselves live in docker_daemon.validate(), which the
docker_daemon_json module and the docker_daemon_errors filter use too.

Calling convention (see checks.py): ``_docker_engine_config | qwen3vl.ha.docker_engine_plan`` returns
``{"errors": [...], "warnings": [...]}``, each message starting with the variable to fix.
"""

from __future__ import annotations

from ansible_collections.qwen3vl.ha.plugins.module_utils import checks, docker_daemon

REPO_SCHEMES = ("http", "https", "file")
# What apt accepts in a version: [epoch:]upstream[-revision]; "" = the newest.
_APT_VERSION = r"^[0-9A-Za-z.+~:-]*$"


def _daemon_errors(config, extra_keys):
    errors = []
    for key in ("daemon_defaults", "daemon_options"):
        if key in config:
            errors += docker_daemon.validate(config[key], where="docker_engine_" + key, allowed_extra_keys=extra_keys)
    return errors


def _mirror_errors(mirrors):
    problem = checks.string_list(mirrors, "docker_engine_registry_mirrors")
    if problem:
        return [problem]
    # docker_engine_registry_mirrors: <value> is not an http(s) URL (molecule's bad-input test reads this text)
    return [
        "docker_engine_registry_mirrors: %s is not an http(s) URL" % mirror
        for mirror in mirrors
        if checks.url(mirror, "docker_engine_registry_mirrors") is not None
    ]


def _repository_errors(config):
    """Docker's apt repository: only read when docker_engine_source is "docker"."""
    errors = []
    if "repo_url" in config:
        checks.add(errors, checks.url(config["repo_url"], "docker_engine_repo_url", schemes=REPO_SCHEMES))
    key_content = config.get("repo_key_content") or ""
    if not (isinstance(key_content, str) and key_content.strip()) and "repo_key_url" in config:
        problem = checks.url(config["repo_key_url"], "docker_engine_repo_key_url", schemes=REPO_SCHEMES)
        if problem:
            errors.append(problem + " (or set docker_engine_repo_key_content)")
    if "version" in config:
        checks.add(
            errors,
            checks.matches(
                config["version"],
                "docker_engine_version",
                _APT_VERSION,
                "an apt version string (e.g. 5:27.3.1-1~debian.12~bookworm) or empty",
            ),
        )
    return errors


def _warnings(config):
    warnings = []
    source = config.get("source", "distribution")
    if source != "docker" and config.get("version"):
        warnings.append(
            "docker_engine_version: %s is ignored, because docker_engine_source is %s (the distribution's "
            "packages are installed at their newest version)" % (checks.show(config["version"]), source)
        )
    options = config.get("daemon_options") if isinstance(config.get("daemon_options"), dict) else {}
    for key, variable in (
        ("registry-mirrors", "registry_mirrors"),
        ("insecure-registries", "insecure_registries"),
    ):
        if key in options and config.get(variable):
            warnings.append(
                "docker_engine_daemon_options: %r is replaced by docker_engine_%s; set it in one place"
                % (key, variable)
            )
    return warnings


def plan(config):
    """Check the docker_engine role's settings.

    ``config``: the role's variables without the ``docker_engine_`` prefix: source, daemon_defaults,
    daemon_options, daemon_extra_keys, registry_mirrors, insecure_registries, repo_url, repo_key_url,
    repo_key_content, version. A missing key is not checked.

    Returns {"errors": [...], "warnings": [...]}.
    """
    errors = []
    extra_keys = config.get("daemon_extra_keys") or []
    problem = checks.string_list(extra_keys, "docker_engine_daemon_extra_keys", hint="daemon.json key names")
    if problem:
        errors.append(problem)
        extra_keys = []
    errors += _daemon_errors(config, tuple(extra_keys))
    if "registry_mirrors" in config:
        errors += _mirror_errors(config["registry_mirrors"])
    if config.get("source", "distribution") == "docker":
        errors += _repository_errors(config)
    return {"errors": errors, "warnings": _warnings(config)}
