# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn the inventory into nginx upstream servers, and the nginx_lb role's settings into error messages.

Pure Python (no Ansible imports): the filter plugins ``qwen3vl.ha.nginx_lb_upstreams`` and
``qwen3vl.ha.nginx_lb_errors`` wrap it and unit tests call it directly.

Upstreams: every model instance of every backend (GPU) host. What runs on a GPU host is what the webui
role recorded there (the ``webui_deployed`` fact in the same run, or the ``qwen3vl_webui`` local fact
that role writes to /etc/ansible/facts.d). An instance the webui role blocked (bad weights, sick GPU)
is not running, so it is left out with the reason, instead of costing every client a failed attempt.
"""

from __future__ import annotations

import ipaddress
import re

from ansible_collections.qwen3vl.ha.plugins.module_utils import checks, upstream_check, webui_plan

_SIZE = re.compile(r"^[0-9]+[kKmMgG]?$")
_PATH = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@/%-]*$")
_USER = re.compile(r"^[^:\s]+$")


def server_address(address, port):
    """``host:port`` for nginx, with brackets around an IPv6 address."""
    try:
        if ipaddress.ip_address(str(address)).version == 6:
            return "[%s]:%d" % (address, port)
    except ValueError:
        pass
    return "%s:%d" % (address, port)


def _health(health):
    paths = {"vllm_path": "/health", "webui_path": "/"}
    paths.update(health or {})
    return paths


def upstreams(backends, webui_servers=None, api_servers=None, unreachable=None, check_mode=False, *, health=None):
    """Compute the two upstreams (WebUI ports, vLLM API ports) from the backend hosts.

    ``backends``: [{"host": name, "address": addr, "deployed": {"instances": [...]} or None}].
    Each instance needs ``ui_port`` and ``vllm_port``; ``blocked`` (non-empty) leaves it out.
    ``webui_servers`` / ``api_servers``: explicit "host:port" lists that replace the computed ones.
    ``unreachable``: hosts that could not be asked; without a record they are skipped, not an error.
    ``check_mode``: a dry run on new hosts, where the webui role has recorded nothing yet: hosts without
    a record are skipped and empty upstreams are allowed (nothing is written in check mode).

    ``health``: {"vllm_path", "webui_path"} for the active checks (defaults /health and /); a host's record
    may name its own WebUI health path (``ui_health_path``).

    Returns {"webui": [{"server", "host", "instance", "key", "checks"}], "api": [...], "skipped": [...],
    "errors": [...]}. ``checks`` are what qwen3vl-upstream-check probes: a WebUI server's WebUI health URL
    and its vLLM's /health; a vLLM server's /health. ``key`` names the model instance (host@id) for a
    drain, so one drain takes both of its servers out.
    """
    paths = _health(health)
    result = {"webui": [], "api": [], "skipped": [], "errors": []}
    explicit = {"webui": list(webui_servers or []), "api": list(api_servers or [])}
    for kind, servers in explicit.items():
        if servers:
            name, path = ("ui", paths["webui_path"]) if kind == "webui" else ("vllm", paths["vllm_path"])
            result[kind] = [
                {
                    "server": str(s),
                    "host": "",
                    "instance": "",
                    "key": upstream_check.key_of(s),
                    "checks": [{"name": name, "url": "http://%s%s" % (s, path)}],
                }
                for s in servers
            ]
    if explicit["webui"] and explicit["api"]:
        return _check_duplicates(result)
    for backend in backends or []:
        host = backend.get("host", "?")
        address = backend.get("address") or host
        instances = webui_plan.recorded_instances(backend.get("deployed"))
        if instances is None and host in (unreachable or ()):
            result["skipped"].append("%s: unreachable, and no record of its instances in this run" % host)
            continue
        if instances is None and check_mode:
            result["skipped"].append("%s: no record of its instances yet (check mode)" % host)
            continue
        if instances is None:
            result["errors"].append(
                "%s: no webui instances recorded on this host (run the webui play on it first, or list "
                "the servers in nginx_lb_webui_servers and nginx_lb_api_servers)" % host
            )
            continue
        webui_path = (backend.get("deployed") or {}).get("ui_health_path") or paths["webui_path"]
        for index, inst in enumerate(instances):
            _instance_servers(result, explicit, (host, address, index, inst), (webui_path, paths["vllm_path"]))
    host_errors = bool(result["errors"]) or check_mode
    for kind in ("webui", "api"):
        if not result[kind] and not host_errors:
            result["errors"].append(
                "no %s servers: no running model instance on any host of the backend group "
                "(nginx_lb_backend_group), and nginx_lb_%s_servers is empty" % (kind, kind)
            )
    return _check_duplicates(result)


def _instance_servers(result, explicit, where, paths):
    """Add one model instance's WebUI and vLLM servers (with their checks) to ``result``."""
    host, address, index, inst = where
    webui_path, vllm_path = paths
    if inst.get("blocked"):
        result["skipped"].append("%s %s: %s" % (host, inst.get("ui_name") or "instance %d" % index, inst["blocked"]))
        return
    ports = {}
    for port_key, name_key in (("ui_port", "ui_name"), ("vllm_port", "vllm_name")):
        if not checks.is_port(inst.get(port_key)):
            name = inst.get(name_key) or "instance %d" % index
            result["errors"].append("%s %s: %s %r is not a port" % (host, name, port_key, inst.get(port_key)))
            continue
        ports[port_key] = server_address(address, inst[port_key])
    if len(ports) < 2:
        return
    vllm_check = {"name": "vllm", "url": "http://%s%s" % (ports["vllm_port"], vllm_path)}
    key = upstream_check.key_of("%s@%s" % (host, inst.get("id", index)))  # the drain key
    for kind, port_key, name_key, own in (
        ("webui", "ui_port", "ui_name", [{"name": "ui", "url": "http://%s%s" % (ports["ui_port"], webui_path)}]),
        ("api", "vllm_port", "vllm_name", []),
    ):
        if explicit[kind]:
            continue
        result[kind].append(
            {
                "server": ports[port_key],
                "host": host,
                "instance": inst.get(name_key) or "instance %d" % index,
                "key": key,
                "checks": [vllm_check] + own,  # vLLM first: when both fail, the reason names the cause
            }
        )


def _check_duplicates(result):
    for kind in ("webui", "api"):
        seen = set()
        for entry in result[kind]:
            if entry["server"] in seen:
                result["errors"].append("%s upstream lists %s twice" % (kind, entry["server"]))
            seen.add(entry["server"])
    return result


def _time_errors(cfg, keys):
    what = "an nginx time (e.g. 2s, 500ms, 10m)"
    return checks.add([], *(checks.duration(cfg[key], "nginx_lb_" + key, what=what) for key in keys if key in cfg))


def _path_errors(cfg):
    errors = []
    for key in ("webui_locations", "api_paths", "denied_paths"):
        for path in cfg.get(key) or []:
            if not isinstance(path, str) or not _PATH.match(path):
                errors.append(
                    "nginx_lb_%s: %r must be a URL path starting with / (no spaces, quotes or braces)" % (key, path)
                )
    allowed = set(cfg.get("api_paths") or [])
    overlap = sorted(allowed.intersection(cfg.get("denied_paths") or []))
    if overlap:
        errors.append("nginx_lb_api_paths: %s also in nginx_lb_denied_paths" % ", ".join(overlap))
    return errors


def _auth_errors(cfg):
    errors = []
    users = cfg.get("basic_auth_users") or []
    if "webui_auth" in cfg:
        mode = cfg["webui_auth"]
        if mode not in ("basic", "none"):
            errors.append("nginx_lb_webui_auth: must be basic or none, got %r" % (mode,))
        elif mode == "basic" and not users:
            errors.append(
                "nginx_lb_basic_auth_users: empty, and nginx_lb_webui_auth is basic: the WebUI would be open to anyone "
                "who reaches the front door; list its users (passwords from Vault), or set nginx_lb_webui_auth: none "
                "if something in front of it authenticates them"
            )
        elif mode == "none" and users:
            errors.append(
                "nginx_lb_webui_auth: none, but nginx_lb_basic_auth_users lists users; set basic to use them, or remove them"
            )
    names = []
    for index, user in enumerate(cfg.get("basic_auth_users") or []):
        if not isinstance(user, dict) or not user.get("name") or not user.get("password"):
            errors.append("nginx_lb_basic_auth_users[%d]: needs a name and a password" % index)
            continue
        if not _USER.match(str(user["name"])):
            errors.append("nginx_lb_basic_auth_users[%d]: name %r has a colon or a space" % (index, user["name"]))
        names.append(user["name"])
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        errors.append("nginx_lb_basic_auth_users: %s listed twice" % ", ".join(dupes))
    return errors


_KEY_FORBIDDEN = re.compile(r'["\'\\{};\s]')


def _audit_errors(cfg):
    """The audit log and the API keys it names. A message never shows a key, only where it is."""
    errors = []
    if cfg.get("audit_log"):
        checks.add(errors, checks.absolute_path(cfg["audit_log"], "nginx_lb_audit_log"))
    if "audit_log_days" in cfg:
        checks.add(errors, checks.integer(cfg["audit_log_days"], "nginx_lb_audit_log_days", minimum=1))
    keys = cfg.get("api_keys") or []
    if not isinstance(keys, list):
        return errors + ["nginx_lb_api_keys: must be a list of {name, key}"]
    names = []
    for index, entry in enumerate(keys):
        where = "nginx_lb_api_keys[%d]" % index
        if not isinstance(entry, dict) or not entry.get("name") or not entry.get("key"):
            errors.append("%s: needs a name and a key" % where)
            continue
        checks.add(errors, checks.name(entry["name"], where + ".name"))
        if not isinstance(entry["key"], str) or _KEY_FORBIDDEN.search(entry["key"]):
            errors.append(
                "%s.key: holds a quote, backslash, brace, semicolon or white space (the key is not shown)" % where
            )
        names.append(entry["name"])
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        errors.append("nginx_lb_api_keys: %s listed twice" % ", ".join(str(d) for d in dupes))
    return errors


def _tls_errors(cfg):
    cert = (cfg.get("tls_certificate") or "").strip()
    key = (cfg.get("tls_private_key") or "").strip()
    if cert and not key:
        return [
            "nginx_lb_tls_private_key: empty, but nginx_lb_tls_certificate is set (give both, or neither for a self-signed one)"
        ]
    if key and not cert:
        return [
            "nginx_lb_tls_certificate: empty, but nginx_lb_tls_private_key is set (give both, or neither for a self-signed one)"
        ]
    errors = []
    if cert and "-----BEGIN CERTIFICATE-----" not in cert:
        errors.append("nginx_lb_tls_certificate: not a PEM certificate (no BEGIN CERTIFICATE line)")
    if key and not re.search(r"-----BEGIN (RSA |EC |ENCRYPTED )?PRIVATE KEY-----", key):
        errors.append("nginx_lb_tls_private_key: not a PEM private key (no BEGIN PRIVATE KEY line)")
    if "ENCRYPTED" in key:
        errors.append(
            "nginx_lb_tls_private_key: encrypted keys need a passphrase at every reload; give an unencrypted key (from Vault)"
        )
    return errors


def config_errors(cfg):
    """Messages naming the variable for each setting of the nginx_lb role that cannot work.

    ``cfg``: the role's settings without the ``nginx_lb_`` prefix.
    """
    errors = []
    errors += _tls_errors(cfg)
    errors += _auth_errors(cfg)
    errors += _audit_errors(cfg)
    errors += _path_errors(cfg)
    errors += _time_errors(
        cfg,
        ("proxy_connect_timeout", "proxy_read_timeout", "proxy_send_timeout", "next_upstream_timeout"),
    )
    # nginx reads a server's fail_timeout in whole seconds: "500ms" fails nginx -t
    if "fail_timeout" in cfg and not re.match(r"^[0-9]+[smhdwMy]?$", str(cfg["fail_timeout"])):
        errors.append("nginx_lb_fail_timeout: %r is not an nginx time in seconds (e.g. 5s, 1m)" % cfg["fail_timeout"])
    if "client_max_body_size" in cfg and not _SIZE.match(str(cfg["client_max_body_size"])):
        errors.append("nginx_lb_client_max_body_size: %r is not an nginx size (e.g. 10m)" % cfg["client_max_body_size"])
    for key in ("http_port", "https_port"):
        if key in cfg:
            checks.add(errors, checks.port(cfg[key], "nginx_lb_" + key, what="port"))
    if cfg.get("http_port") == cfg.get("https_port") and "http_port" in cfg:
        errors.append("nginx_lb_http_port and nginx_lb_https_port: both %s" % cfg["http_port"])
    for key, low in (("max_fails", 0), ("next_upstream_tries", 1), ("keepalive", 0)):
        if key in cfg:
            checks.add(errors, checks.integer(cfg[key], "nginx_lb_" + key, minimum=low))
    return errors + _active_check_errors(cfg) + _client_errors(cfg)


_RATE = re.compile(r"^[1-9][0-9]{0,6}r/[sm]$")


def _client_errors(cfg):
    """What the front door does per client: limits, HSTS, the proxies whose X-Forwarded-For it believes."""
    errors = []
    rate = cfg.get("rate_limit", "")
    if rate not in ("", None) and not (isinstance(rate, str) and _RATE.match(rate)):
        errors.append(
            "nginx_lb_rate_limit: %s is not a rate per client (e.g. 20r/s, 600r/m; empty = none)" % checks.show(rate)
        )
    for key in ("rate_burst", "conn_limit", "hsts_max_age"):
        if key in cfg:
            checks.add(errors, checks.integer(cfg[key], "nginx_lb_" + key, minimum=0))
    proxies = cfg.get("trusted_proxies", [])
    if not isinstance(proxies, list):
        errors.append(
            "nginx_lb_trusted_proxies: must be a list of addresses or networks, got %s" % checks.show(proxies)
        )
    else:
        for index, proxy in enumerate(proxies):
            checks.add(errors, checks.network(proxy, "nginx_lb_trusted_proxies[%d]" % index))
    return errors


def _active_check_errors(cfg):
    """The active health checks (qwen3vl-upstream-check): seconds, counts and URL paths."""
    errors = []
    for key in ("check_interval", "check_timeout"):
        if key in cfg:
            checks.add(errors, checks.number(cfg[key], "nginx_lb_" + key, minimum=0.05, maximum=60))
    for key in ("check_fall", "check_rise"):
        if key in cfg:
            checks.add(errors, checks.integer(cfg[key], "nginx_lb_" + key, minimum=1, maximum=100))
    for key in ("check_vllm_path", "check_webui_path"):
        if key in cfg and not (isinstance(cfg[key], str) and _PATH.match(cfg[key])):
            errors.append("nginx_lb_%s: %r is not a URL path starting with /" % (key, cfg[key]))
    return errors
