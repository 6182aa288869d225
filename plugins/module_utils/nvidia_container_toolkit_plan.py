# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check the nvidia_container_toolkit role's settings on the controller, before anything on a host changes.

Pure Python (no Ansible imports): the filter plugin ``qwen3vl.ha.nvidia_container_toolkit_plan`` wraps it
and unit tests call it directly. What depends on the host (is there a GPU, is Docker installed) stays in
the role's preflight.

Calling convention (see checks.py): ``_nvidia_container_toolkit_config | qwen3vl.ha.nvidia_container_toolkit_plan``
returns ``{"errors": [...], "warnings": [...]}``, each message starting with the variable to fix. The
messages keep the wording "<variable> must be ..." that the role's molecule bad-input tests read.
"""

from __future__ import annotations

import json
import re

from ansible_collections.qwen3vl.ha.plugins.module_utils import checks

KEY_HEADER = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
REPO_SCHEMES = ("http", "https", "file")
# upstream-revision as apt prints it (1.17.8-1, 1.18.0~rc.1-1), or "" for the newest
_VERSION = r"^([0-9]+\.[0-9]+\.[0-9]+([~+][0-9A-Za-z.~+]+)?-[0-9A-Za-z.~+]+)?$"
_CDI_SPEC = r"^/.+\.(yaml|json)$"


def _got(value):
    """The value as JSON, as the messages have always shown it."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return checks.show(value)


def _url_ok(value):
    return checks.url(value, "url", schemes=REPO_SCHEMES) is None


def _repository_errors(config):
    errors = []
    if "repo_url" in config and not _url_ok(config["repo_url"]):
        errors.append(
            "nvidia_container_toolkit_repo_url must be an http(s):// or file:// URL (a mirror of NVIDIA's flat "
            "repository), got " + _got(config["repo_url"])
        )
    # a non-empty key content replaces the key URL (install.yml tests its length, so whitespace counts)
    content = config.get("repo_key_content") or ""
    if not content and "repo_key_url" in config and not _url_ok(config["repo_key_url"]):
        errors.append(
            "nvidia_container_toolkit_repo_key_url must be an http(s):// or file:// URL (or set "
            "nvidia_container_toolkit_repo_key_content), got " + _got(config["repo_key_url"])
        )
    header = config.get("key_header") or KEY_HEADER
    if content and not (isinstance(content, str) and content.strip().startswith(header)):
        errors.append(
            "nvidia_container_toolkit_repo_key_content must be an ASCII-armoured key starting with %s "
            "(export it with gpg --armor --export)" % header
        )
    return errors


def plan(config):
    """Check the nvidia_container_toolkit role's settings.

    ``config``: the role's variables without the ``nvidia_container_toolkit_`` prefix: repo_url, repo_key_url,
    repo_key_content, version, cdi_spec_path, verify, verify_image, verify_command; and key_header (what a
    repository key starts with; KEY_HEADER when missing). A missing key is not checked.

    Returns {"errors": [...], "warnings": [...]}.
    """
    errors = _repository_errors(config)
    version = config.get("version", "")
    if not (isinstance(version, str) and re.match(_VERSION, version)):
        errors.append(
            "nvidia_container_toolkit_version must be empty or a full apt version such as 1.17.8-1 "
            "(upstream-revision, as `apt-cache madison nvidia-container-toolkit` prints it), got " + _got(version)
        )
    if "cdi_spec_path" in config:
        path = config["cdi_spec_path"]
        if not (isinstance(path, str) and re.match(_CDI_SPEC, path)):
            errors.append(
                "nvidia_container_toolkit_cdi_spec_path must be an absolute path ending in .yaml or .json, got "
                + _got(path)
            )
    verification = "verify_image" in config or "verify_command" in config
    if (
        verification
        and config.get("verify", True)
        and not (config.get("verify_image") and config.get("verify_command"))
    ):
        errors.append(
            "nvidia_container_toolkit_verify_image and nvidia_container_toolkit_verify_command must not be empty"
            " (set nvidia_container_toolkit_verify: false to skip the verification)"
        )
    return {"errors": errors, "warnings": []}
