"""nvidia_container_toolkit_plan core: every check of the role's preflight fires on bad input, with the
"<variable> must be ..." texts the molecule bad-input tests read, and stays quiet on good input."""

import pytest

from ansible_collections.qwen3vl.ha.plugins.module_utils import nvidia_container_toolkit_plan as core

KEY = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBF...\n-----END PGP PUBLIC KEY BLOCK-----\n"
GOOD = {
    "repo_url": "https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH)",
    "repo_key_url": "https://nvidia.github.io/libnvidia-container/gpgkey",
    "repo_key_content": "",
    "key_header": "-----BEGIN PGP PUBLIC KEY BLOCK-----",
    "version": "1.17.8-1",
    "cdi_spec_path": "/etc/cdi/nvidia.yaml",
    "verify": True,
    "verify_image": "ubuntu:24.04",
    "verify_command": ["nvidia-smi", "-L"],
}


def plan(**changes):
    return core.plan(dict(GOOD, **changes))


def test_good_settings_have_no_errors():
    assert plan() == {"errors": [], "warnings": []}


@pytest.mark.parametrize(
    "changes",
    [
        {"version": ""},
        {"version": "1.18.0~rc.1-1"},
        {"repo_url": "file:///srv/mirror/stable/deb/$(ARCH)"},
        {"repo_key_url": "http://127.0.0.1:8089/gpgkey"},
        {"repo_key_url": "not used", "repo_key_content": KEY},
        {"repo_key_content": "  \n" + KEY},
        {"cdi_spec_path": "/var/run/cdi/nvidia.json"},
        {"verify": False, "verify_image": "", "verify_command": []},
    ],
)
def test_good_variants_pass(changes):
    assert plan(**changes)["errors"] == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"repo_url": "nvidia.github.io/libnvidia-container/stable/deb/amd64"},
            "nvidia_container_toolkit_repo_url must be an http(s):// or file:// URL (a mirror of NVIDIA's flat "
            'repository), got "nvidia.github.io/libnvidia-container/stable/deb/amd64"',
        ),
        (
            {"repo_key_url": "ftp://example.invalid/gpgkey"},
            "nvidia_container_toolkit_repo_key_url must be an http(s):// or file:// URL (or set "
            'nvidia_container_toolkit_repo_key_content), got "ftp://example.invalid/gpgkey"',
        ),
        (
            {"repo_key_content": "not a key"},
            "nvidia_container_toolkit_repo_key_content must be an ASCII-armoured key starting with "
            "-----BEGIN PGP PUBLIC KEY BLOCK----- (export it with gpg --armor --export)",
        ),
        (
            {"version": "1.17.8"},
            "nvidia_container_toolkit_version must be empty or a full apt version such as 1.17.8-1 "
            '(upstream-revision, as `apt-cache madison nvidia-container-toolkit` prints it), got "1.17.8"',
        ),
        (
            {"cdi_spec_path": "etc/cdi/nvidia"},
            'nvidia_container_toolkit_cdi_spec_path must be an absolute path ending in .yaml or .json, got "etc/cdi/nvidia"',
        ),
        (
            {"cdi_spec_path": "/etc/cdi/nvidia.toml"},
            "nvidia_container_toolkit_cdi_spec_path must be an absolute path ending in .yaml or .json",
        ),
        (
            {"verify_image": ""},
            "nvidia_container_toolkit_verify_image and nvidia_container_toolkit_verify_command must not be empty"
            " (set nvidia_container_toolkit_verify: false to skip the verification)",
        ),
        ({"verify_command": []}, "nvidia_container_toolkit_verify_image and nvidia_container_toolkit_verify_command"),
    ],
)
def test_each_check_fires_with_its_message(changes, message):
    errors = plan(**changes)["errors"]
    assert len(errors) == 1, errors
    assert message in errors[0]


def test_key_url_is_not_needed_with_key_content_and_all_problems_come_at_once():
    errors = plan(repo_url="x", repo_key_url="y", version="1", cdi_spec_path="z", verify_image="")["errors"]
    assert [e.split(" ")[0] for e in errors] == [
        "nvidia_container_toolkit_repo_url",
        "nvidia_container_toolkit_repo_key_url",
        "nvidia_container_toolkit_version",
        "nvidia_container_toolkit_cdi_spec_path",
        "nvidia_container_toolkit_verify_image",
    ]


def test_default_key_header_when_the_role_does_not_pass_one():
    config = dict(GOOD, repo_key_content="-----BEGIN PGP PRIVATE KEY BLOCK-----")
    del config["key_header"]
    assert core.plan(config)["errors"][0].startswith("nvidia_container_toolkit_repo_key_content must be")
