"""dpkg_status.parse: dpkg-query lines -> package_facts' shape, only fully installed packages."""

import pytest

from ansible_collections.qwen3vl.ha.plugins.module_utils import dpkg_status


def test_installed_packages_in_package_facts_shape():
    text = "nginx-light\t1.22.1-9\tamd64\tinstalled\nlibc6\t2.36-9\tamd64\tinstalled\n"
    assert dpkg_status.parse(text) == {
        "nginx-light": [{"name": "nginx-light", "version": "1.22.1-9", "arch": "amd64", "source": "apt"}],
        "libc6": [{"name": "libc6", "version": "2.36-9", "arch": "amd64", "source": "apt"}],
    }


@pytest.mark.parametrize("status", ["config-files", "half-installed", "unpacked", "half-configured", "not-installed"])
def test_a_package_not_fully_installed_is_missing(status):
    assert dpkg_status.parse(f"keepalived\t1:2.2.7-1\tamd64\t{status}\n") == {}


@pytest.mark.parametrize("status", ["triggers-pending", "triggers-awaited"])
def test_pending_triggers_still_count_as_installed(status):
    assert list(dpkg_status.parse(f"man-db\t2.11.2-2\tamd64\t{status}\n")) == ["man-db"]


def test_multiarch_package_has_one_entry_per_architecture():
    text = "libc6\t2.36-9\tamd64\tinstalled\nlibc6\t2.36-9\ti386\tinstalled\n"
    assert [p["arch"] for p in dpkg_status.parse(text)["libc6"]] == ["amd64", "i386"]


def test_blank_lines_are_ignored_and_a_short_line_is_named():
    assert dpkg_status.parse("\n\n") == {}
    with pytest.raises(ValueError, match="line 2 has 2 fields"):
        dpkg_status.parse("a\t1\tamd64\tinstalled\nbroken\tline\n")
