"""nginx_lb_plan core: upstream servers from what the webui role deployed, and preflight messages."""

import pytest

from ansible_collections.qwen3vl.ha.plugins.module_utils import nginx_lb_plan as core


def inst(n, blocked=""):
    return {
        "ui_name": "qwen3vl-webui-%d" % n,
        "vllm_name": "qwen3vl-vllm-%d" % n,
        "ui_port": 7860 + n,
        "vllm_port": 8000 + n,
        "blocked": blocked,
    }


def host(name, address, *instances):
    return {"host": name, "address": address, "deployed": {"instances": list(instances)}}


def servers(result, kind):
    return [entry["server"] for entry in result[kind]]


def test_every_instance_of_every_host_becomes_a_webui_and_an_api_server():
    result = core.upstreams([host("gpu1", "10.0.0.21", inst(0), inst(1)), host("gpu2", "10.0.0.22", inst(0))])
    assert result["errors"] == []
    assert servers(result, "webui") == ["10.0.0.21:7860", "10.0.0.21:7861", "10.0.0.22:7860"]
    assert servers(result, "api") == ["10.0.0.21:8000", "10.0.0.21:8001", "10.0.0.22:8000"]
    assert result["webui"][1]["host"] == "gpu1"
    assert result["webui"][1]["instance"] == "qwen3vl-webui-1"
    assert result["api"][1]["instance"] == "qwen3vl-vllm-1"


def test_each_server_carries_its_active_checks_and_the_instance_drain_key():
    record = host("gpu1", "10.0.0.21", dict(inst(1), id=1))
    record["deployed"]["ui_health_path"] = "/healthz"
    result = core.upstreams([record], health={"vllm_path": "/health", "webui_path": "/"})
    vllm = {"name": "vllm", "url": "http://10.0.0.21:8001/health"}
    # a WebUI is only useful while its own vLLM answers, so it is checked too
    assert result["webui"][0]["checks"] == [vllm, {"name": "ui", "url": "http://10.0.0.21:7861/healthz"}]
    assert result["api"][0]["checks"] == [vllm]
    assert result["webui"][0]["key"] == result["api"][0]["key"] == "gpu1@1"


def test_a_record_without_a_health_path_uses_the_role_default_and_ipv6_urls_get_brackets():
    result = core.upstreams([host("gpu1", "2001:db8::21", inst(0))], health={"webui_path": "/health"})
    assert result["webui"][0]["checks"][1]["url"] == "http://[2001:db8::21]:7860/health"
    assert result["api"][0]["checks"][0]["url"] == "http://[2001:db8::21]:8000/health"
    assert result["webui"][0]["key"] == "gpu1@0"


def test_explicit_servers_are_checked_on_their_own_paths():
    result = core.upstreams(
        [], webui_servers=["192.0.2.5:7860"], api_servers=["[2001:db8::5]:8000"], health={"webui_path": "/ok"}
    )
    assert result["webui"][0]["checks"] == [{"name": "ui", "url": "http://192.0.2.5:7860/ok"}]
    assert result["api"][0]["checks"] == [{"name": "vllm", "url": "http://[2001:db8::5]:8000/health"}]
    assert result["api"][0]["key"] == "_2001_db8__5__8000"


def test_a_blocked_instance_is_left_out_with_its_reason():
    result = core.upstreams([host("gpu1", "10.0.0.21", inst(0), inst(1, blocked="GPU 1 unhealthy: 2 volatile DBE"))])
    assert result["errors"] == []
    assert servers(result, "webui") == ["10.0.0.21:7860"]
    assert result["skipped"] == ["gpu1 qwen3vl-webui-1: GPU 1 unhealthy: 2 volatile DBE"]


def test_ipv6_addresses_get_brackets():
    result = core.upstreams([host("gpu1", "2001:db8::21", inst(0))])
    assert servers(result, "webui") == ["[2001:db8::21]:7860"]


def test_a_host_without_a_record_is_an_error_naming_it():
    result = core.upstreams(
        [host("gpu1", "10.0.0.21", inst(0)), {"host": "gpu2", "address": "10.0.0.22", "deployed": None}]
    )
    assert len(result["errors"]) == 1
    assert result["errors"][0].startswith("gpu2: no webui instances recorded")
    assert "nginx_lb_webui_servers" in result["errors"][0]


def test_an_unreachable_host_without_a_record_is_skipped_not_an_error():
    backends = [host("gpu1", "10.0.0.21", inst(0)), {"host": "gpu2", "address": "10.0.0.22", "deployed": None}]
    result = core.upstreams(backends, unreachable=["gpu2"])
    assert result["errors"] == []
    assert servers(result, "webui") == ["10.0.0.21:7860"]
    assert result["skipped"] == ["gpu2: unreachable, and no record of its instances in this run"]


def test_check_mode_on_new_hosts_skips_hosts_without_a_record():
    backends = [{"host": "gpu1", "address": "10.0.0.21", "deployed": None}]
    result = core.upstreams(backends, check_mode=True)
    assert result["errors"] == []
    assert result["webui"] == []
    assert result["skipped"] == ["gpu1: no record of its instances yet (check mode)"]


def test_no_running_instance_anywhere_is_an_error():
    result = core.upstreams([host("gpu1", "10.0.0.21", inst(0, blocked="bad checksum"))])
    assert [e.split(":")[0] for e in result["errors"]] == ["no webui servers", "no api servers"]


def test_explicit_server_lists_replace_the_inventory():
    result = core.upstreams([], webui_servers=["192.0.2.5:7860"], api_servers=["192.0.2.5:8000"])
    assert result["errors"] == []
    assert servers(result, "webui") == ["192.0.2.5:7860"]
    assert servers(result, "api") == ["192.0.2.5:8000"]


def test_one_explicit_list_keeps_the_other_computed():
    result = core.upstreams([host("gpu1", "10.0.0.21", inst(0))], webui_servers=["192.0.2.5:7860"])
    assert servers(result, "webui") == ["192.0.2.5:7860"]
    assert servers(result, "api") == ["10.0.0.21:8000"]


def test_the_same_server_twice_is_an_error():
    result = core.upstreams([host("gpu1", "10.0.0.21", inst(0)), host("gpu1-alias", "10.0.0.21", inst(0))])
    assert "webui upstream lists 10.0.0.21:7860 twice" in result["errors"]


def test_a_port_that_is_not_a_port_is_an_error():
    bad = dict(inst(0), ui_port="7860")
    result = core.upstreams([host("gpu1", "10.0.0.21", bad)])
    assert any("ui_port '7860' is not a port" in e for e in result["errors"])


CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
KEY = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----"
GOOD = {
    "tls_certificate": "",
    "tls_private_key": "",
    "basic_auth_users": [{"name": "alice", "password": "s3cret"}],
    "webui_auth": "basic",
    "webui_locations": ["/"],
    "api_paths": ["/v1/models", "/v1/chat/completions"],
    "denied_paths": ["/metrics", "/pause"],
    "proxy_connect_timeout": "2s",
    "proxy_read_timeout": "600s",
    "proxy_send_timeout": "60s",
    "next_upstream_timeout": "10s",
    "fail_timeout": "5s",
    "client_max_body_size": "10m",
    "http_port": 80,
    "https_port": 443,
    "max_fails": 1,
    "next_upstream_tries": 3,
    "keepalive": 32,
    "check_interval": 0.15,
    "check_timeout": 0.3,
    "check_fall": 2,
    "check_rise": 3,
    "check_vllm_path": "/health",
    "check_webui_path": "/health",
    "rate_limit": "20r/s",
    "rate_burst": 40,
    "conn_limit": 0,
    "hsts_max_age": 31536000,
    "trusted_proxies": ["10.0.9.0/24", "192.0.2.7"],
}


def errors(**changes):
    return core.config_errors(dict(GOOD, **changes))


def test_good_settings_have_no_errors():
    assert errors() == []
    assert errors(rate_limit="", conn_limit=5, hsts_max_age=0, trusted_proxies=[]) == []  # the features off
    assert errors(tls_certificate=CERT, tls_private_key=KEY) == []


@pytest.mark.parametrize(
    ("changes", "variable"),
    [
        ({"tls_certificate": CERT}, "nginx_lb_tls_private_key: empty"),
        ({"tls_private_key": KEY}, "nginx_lb_tls_certificate: empty"),
        ({"tls_certificate": "hello", "tls_private_key": KEY}, "nginx_lb_tls_certificate: not a PEM"),
        ({"tls_certificate": CERT, "tls_private_key": "-----BEGIN ENCRYPTED PRIVATE KEY-----"}, "encrypted keys"),
        ({"basic_auth_users": [{"name": "bob"}]}, "nginx_lb_basic_auth_users[0]: needs a name and a password"),
        ({"basic_auth_users": []}, "nginx_lb_basic_auth_users: empty, and nginx_lb_webui_auth is basic"),
        ({"webui_auth": "none"}, "nginx_lb_webui_auth: none, but nginx_lb_basic_auth_users lists users"),
        ({"webui_auth": "sso"}, "nginx_lb_webui_auth: must be basic or none"),
        ({"api_keys": [{"name": "a"}]}, "nginx_lb_api_keys[0]: needs a name and a key"),
        ({"api_keys": [{"name": "a b", "key": "k"}]}, "nginx_lb_api_keys[0].name:"),
        ({"api_keys": [{"name": "a", "key": 'k";x'}]}, "nginx_lb_api_keys[0].key: holds a quote"),
        ({"api_keys": [{"name": "a", "key": "k1"}, {"name": "a", "key": "k2"}]}, "nginx_lb_api_keys: a listed twice"),
        ({"audit_log": "audit.log"}, "nginx_lb_audit_log: 'audit.log'"),
        ({"audit_log_days": 0}, "nginx_lb_audit_log_days: 0"),
        ({"basic_auth_users": [{"name": "a:b", "password": "x"}]}, "has a colon or a space"),
        ({"basic_auth_users": [{"name": "a", "password": "x"}, {"name": "a", "password": "y"}]}, "a listed twice"),
        ({"api_paths": ["v1/models"]}, "nginx_lb_api_paths: 'v1/models' must be a URL path"),
        ({"denied_paths": ["/x{y}"]}, "nginx_lb_denied_paths: '/x{y}'"),
        ({"api_paths": ["/metrics"]}, "nginx_lb_api_paths: /metrics also in nginx_lb_denied_paths"),
        ({"proxy_connect_timeout": "2 seconds"}, "nginx_lb_proxy_connect_timeout: '2 seconds' is not an nginx time"),
        ({"client_max_body_size": "10MB"}, "nginx_lb_client_max_body_size: '10MB'"),
        ({"https_port": 70000}, "nginx_lb_https_port: 70000 is not a port"),
        ({"https_port": 80}, "nginx_lb_http_port and nginx_lb_https_port: both 80"),
        ({"next_upstream_tries": 0}, "nginx_lb_next_upstream_tries: 0 must be an integer >= 1"),
        ({"max_fails": True}, "nginx_lb_max_fails: True must be an integer"),
        ({"fail_timeout": "500ms"}, "nginx_lb_fail_timeout: '500ms' is not an nginx time in seconds"),
        ({"check_interval": 0.01}, "nginx_lb_check_interval: 0.01 must be a number"),
        ({"check_timeout": "fast"}, "nginx_lb_check_timeout: 'fast' must be a number"),
        ({"check_fall": 0}, "nginx_lb_check_fall: 0 must be an integer"),
        ({"check_rise": 1.5}, "nginx_lb_check_rise: 1.5 must be an integer"),
        ({"check_vllm_path": "health"}, "nginx_lb_check_vllm_path: 'health' is not a URL path"),
        ({"check_webui_path": "/a b"}, "nginx_lb_check_webui_path: '/a b' is not a URL path"),
        ({"rate_limit": "20/s"}, "nginx_lb_rate_limit: '20/s' is not a rate per client"),
        ({"rate_limit": "0r/s"}, "nginx_lb_rate_limit: '0r/s' is not a rate per client"),
        ({"rate_limit": 20}, "nginx_lb_rate_limit: 20 is not a rate per client"),
        ({"rate_burst": -1}, "nginx_lb_rate_burst: -1 must be an integer >= 0"),
        ({"conn_limit": "many"}, "nginx_lb_conn_limit: 'many' must be an integer"),
        ({"hsts_max_age": 1.5}, "nginx_lb_hsts_max_age: 1.5 must be an integer"),
        ({"trusted_proxies": "10.0.0.0/8"}, "nginx_lb_trusted_proxies: must be a list"),
        (
            {"trusted_proxies": ["10.0.0.0/8", "proxy.example"]},
            "nginx_lb_trusted_proxies[1]: 'proxy.example' is not an IP",
        ),
    ],
)
def test_each_bad_setting_names_its_variable(changes, variable):
    found = errors(**changes)
    assert any(variable in e for e in found), found


def test_the_webui_may_be_open_only_when_said_so():
    assert core.config_errors(dict(GOOD, webui_auth="none", basic_auth_users=[])) == []


def test_a_bad_api_key_is_never_shown():
    errors = core.config_errors(dict(GOOD, api_keys=[{"name": "a", "key": "secret value"}]))
    assert errors and not any("secret" in e for e in errors), errors
