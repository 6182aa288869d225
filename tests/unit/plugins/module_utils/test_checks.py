"""checks: each shared check accepts good values (None) and names the variable when it rejects a bad one."""

import pytest

from ansible_collections.qwen3vl.ha.plugins.module_utils import checks

WHERE = "role_setting"


class TaggedStr(str):
    """Stands in for Ansible's tagged/unsafe str subclasses."""

    def __repr__(self):
        return "TaggedStr(%s)" % str.__repr__(self)


GOOD = [
    (checks.integer, 0, {}),
    (checks.integer, 5, {"minimum": 1, "maximum": 5}),
    (checks.number, 0.5, {"minimum": 0, "maximum": 1, "exclusive_minimum": True}),
    (checks.number, 1, {"minimum": 0, "maximum": 1, "exclusive_minimum": True}),
    (checks.port, 1, {}),
    (checks.port, 65535, {}),
    (checks.one_of, "archive", {"choices": ("registry", "archive")}),
    (checks.one_of, 1, {"choices": (1, 2)}),
    (checks.non_empty, "x", {}),
    (checks.non_empty, ["a"], {}),
    (checks.string_list, [], {}),
    (checks.string_list, ["--a", "b"], {"allow_empty": False}),
    (checks.absolute_path, "/srv/models/m", {}),
    (checks.absolute_path, "/etc/cdi/nvidia.yaml", {"suffixes": (".yaml", ".json")}),
    (checks.url, "https://mirror.example:8443/docker", {}),
    (checks.url, "http://10.0.0.1", {}),
    (checks.url, "file:///srv/mirror", {"schemes": ("http", "https", "file")}),
    (checks.base_url, "https://172.29.72.100", {"credentials_hint": "api_key"}),
    (checks.base_url, "http://127.0.0.1:8000/prefix/", {"credentials_hint": "api_key"}),
    (checks.duration, "500ms", {}),
    (checks.duration, 90, {}),
    (checks.duration, "10m", {}),
    (checks.matches, "1.17.8-1", {"pattern": r"^[0-9.]+-[0-9]+$", "what": "a version"}),
    (checks.name, "qwen3vl-vllm_0.a", {}),
    (checks.address, "10.0.0.5", {}),
    (checks.address, "fd00::5", {"version": 6}),
    (checks.network, "10.0.0.0/24", {}),
    (checks.network, "10.0.0.5/24", {"version": 4}),
    (checks.network, "fd00::/64", {"version": 6}),
    (checks.unknown_keys, {"a": 1}, {"allowed": ("a", "b")}),
    (checks.unknown_keys, {}, {"allowed": ()}),
]

BAD = [
    (checks.integer, True, {}, "True must be an integer"),
    (checks.integer, "3", {}, "'3' must be an integer"),
    (checks.integer, 0, {"minimum": 1}, "0 must be an integer >= 1"),
    (checks.integer, 6, {"minimum": 1, "maximum": 5}, "6 must be an integer from 1 to 5"),
    (checks.integer, 6, {"maximum": 5}, "6 must be an integer <= 5"),
    (checks.number, 0, {"minimum": 0, "maximum": 1, "exclusive_minimum": True}, "0 must be a number in (0, 1]"),
    (checks.number, 1.5, {"minimum": 0, "maximum": 1, "exclusive_minimum": True}, "1.5 must be a number in (0, 1]"),
    (checks.number, -1, {"minimum": 0}, "-1 must be a number >= 0"),
    (checks.number, 0, {"minimum": 0, "exclusive_minimum": True}, "0 must be a number > 0"),
    (checks.number, "0.5", {}, "'0.5' must be a number"),
    (checks.number, False, {}, "False must be a number"),
    (checks.port, 0, {}, "0 is not a TCP port (1-65535)"),
    (checks.port, 65536, {}, "65536 is not a TCP port (1-65535)"),
    (checks.port, "80", {}, "'80' is not a TCP port"),
    (checks.port, True, {"what": "port"}, "True is not a port (1-65535)"),
    (checks.one_of, "ftp", {"choices": ("registry", "archive")}, "must be one of registry, archive, got 'ftp'"),
    (checks.one_of, True, {"choices": (1, 2)}, "must be one of 1, 2, got True"),
    (checks.non_empty, "  ", {"hint": "set it"}, "empty; set it"),
    (checks.non_empty, [], {}, "empty"),
    (checks.non_empty, None, {}, "empty"),
    (checks.string_list, "a b", {"hint": "one per item"}, "must be a list of strings (one per item)"),
    (checks.string_list, ["a", 1], {}, "must be a list of strings"),
    (checks.string_list, [], {"allow_empty": False}, "must be a non-empty list of strings"),
    (checks.absolute_path, "models/x", {}, "'models/x' is not an absolute path"),
    (checks.absolute_path, None, {"what": "an absolute path to X"}, "None is not an absolute path to X"),
    (checks.absolute_path, "/etc/cdi/nvidia", {"suffixes": (".yaml", ".json")}, "ending in .yaml or .json"),
    (checks.absolute_path, "/a\nb", {}, "is not an absolute path"),
    (checks.url, "ftp://host/x", {}, "'ftp://host/x' is not an http:// or https:// URL"),
    (checks.url, "mirror.example", {}, "is not an http:// or https:// URL"),
    (checks.url, "https://", {}, "is not an http:// or https:// URL"),
    (checks.url, "https://host:99999/", {}, "is not an http:// or https:// URL"),
    (checks.url, "https://host/a b", {}, "is not an http:// or https:// URL"),
    (checks.url, "file://", {"schemes": ("file",)}, "is not a file:// URL"),
    (checks.url, 5, {"what": "a mirror URL"}, "5 is not a mirror URL"),
    (checks.base_url, "ftp://h", {"credentials_hint": "x"}, "'ftp://h' is not an http:// or https:// URL with a host"),
    (checks.base_url, "127.0.0.1:8000", {"credentials_hint": "x"}, "is not an http:// or https:// URL with a host"),
    (checks.base_url, "http://h:80a0", {"credentials_hint": "x"}, "'http://h:80a0' has an invalid port"),
    (checks.base_url, "http://h:0", {"credentials_hint": "x"}, "has an invalid port"),
    (
        checks.base_url,
        "http://u:p@h",
        {"credentials_hint": "api_key"},
        "must not hold credentials (user:password@); use api_key",
    ),
    (checks.base_url, "http://h/?a=1", {"credentials_hint": "x"}, "must be a base URL, without query or fragment"),
    (checks.duration, "2 seconds", {}, "'2 seconds' is not a duration"),
    (checks.duration, "5d", {}, "is not a duration"),
    (checks.duration, True, {"what": "an nginx time"}, "True is not an nginx time"),
    (checks.matches, "1.17", {"pattern": r"^[0-9.]+-[0-9]+$", "what": "a version"}, "'1.17' is not a version"),
    (checks.matches, None, {"pattern": r".*", "what": "text"}, "None is not text"),
    (checks.name, "-x", {}, "'-x' is not a name"),
    (checks.name, "a b", {}, "is not a name"),
    (checks.address, "10.0.0.300", {}, "'10.0.0.300' is not an IP address"),
    (checks.address, "fd00::5", {"version": 4}, "'fd00::5' is not an IPv4 address"),
    (checks.address, 5, {}, "5 is not an IP address"),
    (checks.network, "10.0.0.0/33", {}, "'10.0.0.0/33' is not an IP network (CIDR"),
    (checks.network, "10.0.0.5/24", {"strict": True}, "is not an IP network"),
    (checks.network, "10.0.0.0/8", {"version": 6}, "is not an IPv6 network (CIDR, e.g. fd00::/64)"),
    (checks.unknown_keys, {"b": 1, "a": 2, "ok": 3}, {"allowed": ("ok",)}, "unknown key(s) a, b; allowed: ok"),
    (checks.unknown_keys, ["a"], {"allowed": ("a",)}, "must be a mapping, got ['a']"),
]


@pytest.mark.parametrize(("check", "value", "options"), GOOD)
def test_accepts(check, value, options):
    assert check(value, WHERE, **options) is None


@pytest.mark.parametrize(("check", "value", "options", "text"), BAD)
def test_rejects_naming_the_variable(check, value, options, text):
    message = check(value, WHERE, **options)
    assert message.startswith(WHERE + ": ")
    assert text in message


def test_every_check_is_covered():
    tested = {case[0].__name__ for case in GOOD} & {case[0].__name__ for case in BAD}
    public = {
        n
        for n, f in vars(checks).items()
        if callable(f) and not n.startswith("_") and f.__module__ == checks.__name__ and n not in NOT_CHECKS
    }
    assert public <= tested


NOT_CHECKS = {"add", "show", "is_int", "is_number", "is_port"}


def test_add_keeps_only_messages():
    errors = ["first"]
    assert checks.add(errors, None, "second", None) is errors
    assert errors == ["first", "second"]


def test_messages_show_plain_values_of_ansible_subclasses():
    value = TaggedStr("models/x")
    assert repr(value).startswith("TaggedStr")
    assert checks.absolute_path(value, WHERE) == "role_setting: 'models/x' is not an absolute path"
    assert checks.show({"a": [TaggedStr("b")]}) == "{'a': ['b']}"


def test_predicates():
    assert checks.is_int(3) and not checks.is_int(True) and not checks.is_int(3.0)
    assert checks.is_port(80) and not checks.is_port(0) and not checks.is_port(65536) and not checks.is_port(True)
    assert checks.is_number(3.5) and checks.is_number(3) and not checks.is_number(False) and not checks.is_number("3")
