# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small value checks shared by the collection's pure cores, and the calling convention of the plan filters.

Pure Python (no Ansible imports), so cores, modules, filters and unit tests can all use it.

One convention for every check
==============================

``check(value, where, ...)`` returns ``None`` when ``value`` is fine, or ONE message (a str) that starts
with ``where`` (the variable the value comes from, e.g. ``"webui_ui_port_base"`` or
``"webui_instances[1].vllm_port"``), then ``": "``, then what is wrong, with the value as given::

    webui_ui_port_base: 70000 is not a TCP port (1-65535)

Checks never raise and never collect; the caller gathers the messages with :func:`add`::

    errors = []
    add(errors, port(cfg.get("ui_port_base"), "webui_ui_port_base"),
                absolute_path(cfg.get("model_dir"), "webui_model_dir"))

A check that needs a word about what is expected takes ``what`` (the text after "is not"), so a
caller may say "an nginx time (e.g. 2s)" where the default says "a duration". The predicates
:func:`is_int`, :func:`is_number` and :func:`is_port` are for code that branches on a value rather than reporting it.

Plan filters: one calling convention
====================================

Every role whose settings need more than argument_specs can say has one core function and one filter::

    {{ <dict of the role's settings, without the role prefix> | qwen3vl.ha.<role>_plan(<host context>...) }}

- The input is a mapping of the role's variables without the ``<role>_`` prefix (the role builds it once,
  in ``vars/main.yml``, as ``_<role>_config``).
- The positional arguments are what the plan needs from the host (facts, registered results); none when it
  needs nothing.
- The result is a dict that always has ``errors`` (list of str, each starting with the variable name, as
  above; empty when the settings can work) and ``warnings`` (list of str, same shape, for settings that
  work but are probably not meant), plus whatever the role computes from its settings (e.g. ``instances``).
  Computed values are only trustworthy when ``errors`` is empty.
- A filter raises ``AnsibleFilterError`` only when it is called wrongly (the input is not a mapping), never
  for a bad setting: bad settings are ``errors``, so that one assert reports all of them at once.
- A core reads only the keys it needs (a missing key is not checked), and a filter passes Ansible's mapping
  on without copying it, so a setting that is unused here (and may not template on this host) is never read.
- Every message starts with the variable name. New messages use ``"<variable>: ..."`` as above; a few older
  ones that molecule bad-input tests read keep their wording (``"<variable> must be ..."``).

The role's preflight then reads: platform → ``set_fact`` the plan → one ``assert`` on ``plan.errors``
(``fail_msg: "<role> on <host>: " + errors joined by "; "``) → one ``debug`` per warning → host checks.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
import urllib.parse

DURATION_UNITS = ("ms", "s", "m", "h")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# --------------------------------------------------------------------------------------------
# Helpers


def add(errors, *messages):
    """Append every message that is not None to ``errors``; return ``errors``."""
    errors.extend(m for m in messages if m is not None)
    return errors


def show(value):
    """``repr`` of ``value`` as plain Python (no Ansible tagged/unsafe type names), for messages."""
    return repr(_plain(value))


def _plain(value):
    # Ansible hands over subclasses of str/int/float/dict/list (tagged or unsafe values): their repr may
    # name the class; messages should show the value as the user wrote it.
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def is_int(value):
    """True for an int that is not a bool (YAML ``true`` is not a number of seconds)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value):
    """True for an int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_port(value):
    """True for an int (not a bool) from 1 to 65535."""
    return is_int(value) and 1 <= value <= 65535


def _range_text(minimum, maximum, exclusive_minimum=False):
    if minimum is not None and maximum is not None:
        if exclusive_minimum:
            return " in (%s, %s]" % (minimum, maximum)
        return " from %s to %s" % (minimum, maximum)
    if minimum is not None:
        return " %s %s" % (">" if exclusive_minimum else ">=", minimum)
    if maximum is not None:
        return " <= %s" % maximum
    return ""


def _in_range(value, minimum, maximum, exclusive_minimum=False):
    if minimum is not None and (value <= minimum if exclusive_minimum else value < minimum):
        return False
    return maximum is None or value <= maximum


# --------------------------------------------------------------------------------------------
# Checks: (value, where, ...) -> message naming ``where``, or None


def integer(value, where, minimum=None, maximum=None):
    """An int (not a bool) within [minimum, maximum] (either bound may be None)."""
    if is_int(value) and _in_range(value, minimum, maximum):
        return None
    return "%s: %s must be an integer%s" % (where, show(value), _range_text(minimum, maximum))


def number(value, where, minimum=None, maximum=None, exclusive_minimum=False):
    """An int or float (not a bool) within the bounds; ``exclusive_minimum`` makes the lower bound open."""
    if is_number(value) and _in_range(value, minimum, maximum, exclusive_minimum):
        return None
    return "%s: %s must be a number%s" % (where, show(value), _range_text(minimum, maximum, exclusive_minimum))


def port(value, where, what="TCP port"):
    """A TCP/UDP port number: an int from 1 to 65535."""
    if is_port(value):
        return None
    return "%s: %s is not a %s (1-65535)" % (where, show(value), what)


def one_of(value, where, choices):
    """``value`` is one of ``choices`` (compared with ==)."""
    if any(value == c and isinstance(value, bool) == isinstance(c, bool) for c in choices):
        return None
    return "%s: must be one of %s, got %s" % (where, ", ".join(str(c) for c in choices), show(value))


def non_empty(value, where, hint=""):
    """A non-empty string, list or mapping; whitespace-only strings count as empty. ``hint`` says what to set."""
    if isinstance(value, str):
        empty = not value.strip()
    elif isinstance(value, (list, tuple, dict)):
        empty = not value
    else:
        empty = value is None
    if not empty:
        return None
    return "%s: empty%s" % (where, "; " + hint if hint else "")


def string_list(value, where, allow_empty=True, hint=""):
    """A list whose items are all strings; ``hint`` (in parentheses) says what an item is."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value) and (allow_empty or value):
        return None
    return "%s: must be a %slist of strings%s" % (
        where,
        "" if allow_empty else "non-empty ",
        " (%s)" % hint if hint else "",
    )


def absolute_path(value, where, what="an absolute path", suffixes=()):
    """An absolute POSIX path (no NUL, no newline), optionally ending in one of ``suffixes`` (e.g. (".yaml",))."""
    ok = (
        isinstance(value, str)
        and posixpath.isabs(value)
        and not any(c in value for c in "\0\n\r")
        and (not suffixes or value.endswith(tuple(suffixes)))
    )
    if ok:
        return None
    ending = " ending in %s" % " or ".join(suffixes) if suffixes else ""
    return "%s: %s is not %s%s" % (where, show(value), what, ending)


def url(value, where, schemes=("http", "https"), what=None):
    """A URL with one of ``schemes``, a host (file:// needs a path instead), a valid port, no whitespace."""
    if _url_ok(value, schemes):
        return None
    if what is None:
        article = "an" if schemes[0].startswith(("h", "a", "e", "i", "o", "u")) else "a"
        what = "%s %s URL" % (article, " or ".join("%s://" % s for s in schemes))
    return "%s: %s is not %s" % (where, show(value), what)


def base_url(value, where, credentials_hint):
    """The base URL of an HTTP service a client sends to (inference_probe, the load generator): http(s), a
    host, a valid port, and none of what a base does not carry: credentials (``credentials_hint`` says what
    to use instead), a query or a fragment."""
    parsed = urllib.parse.urlsplit(value) if isinstance(value, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname:
        return "%s: %s is not an http:// or https:// URL with a host" % (where, show(value))
    try:
        valid_port = parsed.port != 0
    except ValueError:  # not a number, or above 65535
        valid_port = False
    if not valid_port:
        return "%s: %s has an invalid port" % (where, show(value))
    if parsed.username is not None or parsed.password is not None:
        return "%s: must not hold credentials (user:password@); use %s" % (where, credentials_hint)
    if parsed.query or parsed.fragment:
        return "%s: %s must be a base URL, without query or fragment" % (where, show(value))
    return None


def _url_ok(value, schemes):
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        return False
    try:
        parsed = urllib.parse.urlsplit(value)
        parsed.port  # noqa: B018 - raises ValueError for a port that is not a number or above 65535
    except ValueError:
        return False
    if parsed.scheme not in schemes:
        return False
    if parsed.scheme == "file":
        return bool(parsed.path)
    return bool(parsed.hostname)


def duration(value, where, units=DURATION_UNITS, what="a duration (e.g. 2s, 500ms, 10m)"):
    """A whole number followed by an optional unit from ``units`` (nginx style: 2s, 500ms, 10m, 90)."""
    pattern = r"^[0-9]+(%s)?$" % "|".join(re.escape(u) for u in units)
    if isinstance(value, (str, int)) and not isinstance(value, bool) and re.match(pattern, str(value)):
        return None
    return "%s: %s is not %s" % (where, show(value), what)


def matches(value, where, pattern, what):
    """A string that ``re.match``-es ``pattern`` (anchor it with $ where the whole string counts)."""
    if isinstance(value, str) and re.match(pattern, value):
        return None
    return "%s: %s is not %s" % (where, show(value), what)


def name(value, where, pattern=_NAME, what="a name (letters, digits, '_', '.', '-'; not starting with a symbol)"):
    """An identifier such as a container, instance or user name."""
    return matches(value, where, pattern, what)


def address(value, where, version=None):
    """An IP address; ``version`` 4 or 6 restricts it."""
    try:
        parsed = ipaddress.ip_address(str(value).strip()) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is not None and version in (None, parsed.version):
        return None
    return "%s: %s is not an IP%s address" % (where, show(value), "v%d" % version if version else "")


def network(value, where, version=None, strict=False):
    """A network in CIDR notation (a bare address counts as /32 or /128); host bits allowed unless ``strict``."""
    try:
        parsed = ipaddress.ip_network(str(value).strip(), strict=strict) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is not None and version in (None, parsed.version):
        return None
    return "%s: %s is not an IP%s network (CIDR, e.g. %s)" % (
        where,
        show(value),
        "v%d" % version if version else "",
        "fd00::/64" if version == 6 else "10.0.0.0/24",
    )


def unknown_keys(value, where, allowed):
    """A mapping whose keys are all in ``allowed``; names the unknown ones and lists the allowed ones."""
    if not isinstance(value, dict):
        return "%s: must be a mapping, got %s" % (where, show(value))
    unknown = sorted((str(k) for k in value if k not in allowed), key=str)
    if not unknown:
        return None
    return "%s: unknown key(s) %s; allowed: %s" % (where, ", ".join(unknown), ", ".join(allowed))
