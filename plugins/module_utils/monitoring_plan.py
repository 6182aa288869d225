# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What Prometheus scrapes, from the inventory and from what the roles deployed.

Pure Python (no Ansible imports): the filter ``qwen3vl.ha.prometheus_scrape_configs`` wraps it and unit
tests call it directly.

Every target carries a ``host`` label (the inventory name), so an alert of any job can be matched to its
host (Alertmanager's inhibition of a dead host's other alerts relies on it). A model instance's vLLM target
also carries ``model_instance`` (the webui role's instance id) and ``gpu`` (its GPU index). The instances
come from the webui role's record on each GPU host (the ``webui_deployed`` fact of the same run, or the
``qwen3vl_webui`` local fact it writes): a GPU host added to the inventory and converged is scraped with no
other change. An instance the webui role blocked is scraped too: it is not serving, and that is what the
instance-down alert is for.
"""

from __future__ import annotations

import re
from urllib.parse import urlparse

from ansible_collections.qwen3vl.ha.plugins.module_utils import checks, webui_plan
from ansible_collections.qwen3vl.ha.plugins.module_utils.nginx_lb_plan import server_address

_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h|d|w|y)")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# The roles' textfile metrics name the model instance `instance` and the checker's backend host `host`,
# which Prometheus owns for the target: it keeps the textfile's as `exported_instance` and `exported_host`.
# These rules give them names of their own - `model_instance` on the GPU host's gate and fence metrics (the
# same label as the vLLM job's, so an alert about an instance matches its vLLM target's), `backend_host`
# and `backend_instance` on a load balancer's rotation metrics - and drop the exported_* copies.
TEXTFILE_RELABEL = [
    {
        "source_labels": ["__name__", "exported_instance"],
        "regex": "qwen3vl_(gpu_watch_fenced|instance_gate_open);(.+)",
        "target_label": "model_instance",
        "replacement": "$2",
    },
    {
        "source_labels": ["__name__", "exported_instance"],
        "regex": "qwen3vl_lb_backend_(in_rotation|transitions_total);(.+)",
        "target_label": "backend_instance",
        "replacement": "$2",
    },
    {
        "source_labels": ["__name__", "exported_host"],
        "regex": "qwen3vl_lb_backend_(in_rotation|transitions_total);(.+)",
        "target_label": "backend_host",
        "replacement": "$2",
    },
    {"regex": "exported_instance|exported_host", "action": "labeldrop"},
]


def duration_seconds(text):
    """Seconds in a Prometheus duration ("1m30s"), or None when it is not one."""
    if not isinstance(text, str) or not _DURATION.match(text):
        return None
    return sum(int(n) * _SECONDS[unit] for n, unit in _DURATION_PART.findall(text))


def settings_errors(settings):
    """One message per setting of the prometheus role that cannot work (keys without the prefix)."""
    errors = []
    durations = {}
    for key in ("scrape_interval", "scrape_timeout", "evaluation_interval", "alert_down_for"):
        seconds = duration_seconds(settings.get(key))
        if seconds is None or seconds <= 0:
            errors.append(
                "prometheus_%s must be a Prometheus duration such as 15s or 1m, not %r" % (key, settings.get(key))
            )
        durations[key] = seconds
    if durations["scrape_timeout"] and durations["scrape_interval"]:
        if durations["scrape_timeout"] > durations["scrape_interval"]:
            errors.append(
                "prometheus_scrape_timeout (%s) must not be longer than prometheus_scrape_interval (%s)"
                % (settings["scrape_timeout"], settings["scrape_interval"])
            )
    for key in ("port", "node_exporter_port", "nginx_exporter_port", "blackbox_exporter_port", "alertmanager_port"):
        if not checks.is_port(settings.get(key)):
            errors.append("prometheus_%s must be a TCP port (1-65535), not %r" % (key, settings.get(key)))
    for name in settings.get("external_labels") or {}:
        if not _LABEL.match(str(name)):
            errors.append("prometheus_external_labels: %r is not a valid label name" % name)
    for key, low, high in (
        ("alert_gpu_memory_ratio", 0, 1),
        ("alert_http_5xx_ratio", 0, 1),
        ("alert_cpu_ratio", 0, 1),
        ("alert_kv_cache_ratio", 0, 1),
        ("alert_disk_free_ratio", 0, 1),
    ):
        value = settings.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value < high:
            errors.append(
                "prometheus_%s must be a ratio between %s and %s (exclusive), not %r" % (key, low, high, value)
            )
    for key in ("alert_latency_p95_seconds", "alert_queue_waiting"):
        value = settings.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            errors.append("prometheus_%s must be a positive number, not %r" % (key, value))
    return errors


def address_of(host):
    """The address Prometheus reaches a host on: qwen3vl_monitoring_address, qwen3vl_backend_address,
    ansible_host, else its inventory name."""
    return str(
        host.get("qwen3vl_monitoring_address")
        or host.get("qwen3vl_backend_address")
        or host.get("ansible_host")
        or host.get("inventory_hostname")
    )


def _static(targets):
    """static_configs: one entry per target, so each keeps its own labels."""
    return [{"targets": [address], "labels": labels} for address, labels in targets]


def scrape_configs(hosts, groups, settings):
    """Prometheus ``scrape_configs`` for the site, and what was left out.

    ``hosts``: {inventory name: that host's variables}. ``groups``: {"all", "gpu", "lb", "monitoring",
    "nfs_server": [names]} (the role's group settings resolved). ``settings``: the role's ports, the
    blackbox options (``blackbox_vip_url``, ``blackbox_nfs_port``) and ``check_mode``.

    Returns {"scrape_configs": [...], "alertmanagers": ["addr:port"], "skipped": [messages]}.
    """
    skipped = []

    def at(name, port):
        return server_address(address_of(hosts.get(name) or {"inventory_hostname": name}), port)

    def members(group):
        return [name for name in groups.get(group) or [] if name in hosts]

    jobs = []

    def job(name, targets, **extra):
        if targets:
            jobs.append(dict({"job_name": name, "static_configs": _static(targets)}, **extra))

    job("prometheus", [(at(n, settings["port"]), {"host": n}) for n in members("monitoring")])
    job("alertmanager", [(at(n, settings["alertmanager_port"]), {"host": n}) for n in members("monitoring")])
    job(
        "node",
        [(at(n, settings["node_exporter_port"]), {"host": n}) for n in members("all")],
        metric_relabel_configs=TEXTFILE_RELABEL,
    )
    job("nginx", [(at(n, settings["nginx_exporter_port"]), {"host": n}) for n in members("lb")])

    vllm, health = [], []
    for name in members("gpu"):
        instances = webui_plan.recorded_instances(webui_plan.recorded(hosts[name]))
        if instances is None:
            why = (
                "no record of its model instances yet (check mode)"
                if settings.get("check_mode")
                else ("no model instances recorded (the webui role has not run there)")
            )
            skipped.append("%s: %s" % (name, why))
            continue
        address = address_of(hosts[name])
        for inst in instances:
            if not isinstance(inst, dict) or not inst.get("vllm_port"):
                continue
            labels = {"host": name, "model_instance": str(inst.get("id", "")), "gpu": str(inst.get("gpu_index", ""))}
            vllm.append((server_address(address, int(inst["vllm_port"])), labels))
            health.append(("http://%s/health" % server_address(address, int(inst["vllm_port"])), labels))
    job("vllm", vllm)

    blackbox = server_address(settings.get("blackbox_address") or "127.0.0.1", settings["blackbox_exporter_port"])

    def probe(name, module, targets):
        job(
            name,
            targets,
            metrics_path="/probe",
            params={"module": [module]},
            relabel_configs=[
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"source_labels": ["__param_target"], "target_label": "instance"},
                {"target_label": "__address__", "replacement": blackbox},
            ],
        )

    if settings.get("blackbox"):
        probe("blackbox_instance", "qwen3vl_http_health", health)
        probe(
            "blackbox_nfs",
            "qwen3vl_tcp",
            [(at(n, settings["blackbox_nfs_port"]), {"host": n}) for n in members("nfs_server")],
        )
        if settings.get("blackbox_vip_url"):
            vip = urlparse(settings["blackbox_vip_url"]).hostname or ""
            probe("blackbox_vip", "qwen3vl_https_vip", [(settings["blackbox_vip_url"], {"vip": vip})])

    jobs += list(settings.get("extra") or [])
    return {
        "scrape_configs": jobs,
        "alertmanagers": [at(n, settings["alertmanager_port"]) for n in members("monitoring")],
        "skipped": skipped,
    }


WATCHDOG = "Watchdog"
_NULL_RECEIVER = "qwen3vl-watchdog-null"


def alertmanager_config(settings):
    """Alertmanager's configuration from the alertmanager role's settings, and what cannot work.

    ``settings`` (role variables without the prefix): ``receivers`` (Alertmanager receiver mappings, each with
    a unique ``name``), ``receiver`` (the default), ``critical_receiver`` / ``warning_receiver`` /
    ``watchdog_receiver`` ("" = the default; the watchdog's "" = a receiver that sends nothing), ``group_by``,
    ``group_wait``, ``group_interval``, ``repeat_interval``, ``global`` (e.g. SMTP settings), ``routes_extra``,
    ``inhibit_rules_extra``.

    Routing: the Watchdog first (to its own receiver, repeated every minute, so a dead man's switch service
    sees it stop), then extra routes, then by severity. Inhibition: a host that is down silences the other
    alerts of that host; a vLLM instance that is down silences its other alerts.

    Returns (config, errors).
    """
    errors = []
    receivers = list(settings.get("receivers") or [])
    names = []
    for index, receiver in enumerate(receivers):
        if not isinstance(receiver, dict) or not receiver.get("name"):
            errors.append("alertmanager_receivers[%d] needs a name" % index)
            continue
        names.append(str(receiver["name"]))
    for name in sorted({n for n in names if names.count(n) > 1}):
        errors.append("alertmanager_receivers: the name %r is used twice" % name)
    default = settings.get("receiver") or ""
    if default not in names:
        errors.append(
            "alertmanager_receiver %r is not one of alertmanager_receivers (%s)" % (default, ", ".join(names) or "none")
        )
    picked = {}
    for key in ("critical_receiver", "warning_receiver", "watchdog_receiver"):
        value = settings.get(key) or ""
        if value and value not in names:
            errors.append("alertmanager_%s %r is not one of alertmanager_receivers" % (key, value))
        picked[key] = value
    for key in ("group_wait", "group_interval", "repeat_interval"):
        if not duration_seconds(settings.get(key)):
            errors.append("alertmanager_%s must be a duration such as 30s or 5m, not %r" % (key, settings.get(key)))
    group_by = settings.get("group_by") or []
    if not isinstance(group_by, list) or not all(_LABEL.match(str(g)) or g == "..." for g in group_by):
        errors.append("alertmanager_group_by must be a list of label names (or ['...']), not %r" % (group_by,))

    all_receivers = receivers
    watchdog = picked["watchdog_receiver"]
    if not watchdog:
        watchdog = _NULL_RECEIVER
        all_receivers = receivers + [{"name": _NULL_RECEIVER}]
    routes = [{"receiver": watchdog, "matchers": ['alertname="%s"' % WATCHDOG], "repeat_interval": "1m"}]
    routes += list(settings.get("routes_extra") or [])
    for severity in ("critical", "warning"):
        routes.append({"receiver": picked[severity + "_receiver"] or default, "matchers": ['severity="%s"' % severity]})
    inhibit = [
        {
            "source_matchers": ['alertname="QwenHostDown"'],
            "target_matchers": ['alertname!="QwenHostDown"', 'alertname!="%s"' % WATCHDOG],
            "equal": ["host"],
        },
        {
            "source_matchers": ['alertname="QwenVLLMDown"'],
            "target_matchers": [
                'alertname=~"QwenVLLM.+|QwenLatency.+|QwenHTTP5xx.+|QwenQueue.+|QwenKVCache.+"',
                'alertname!="QwenVLLMDown"',
            ],
            "equal": ["host", "model_instance"],
        },
    ]
    inhibit += list(settings.get("inhibit_rules_extra") or [])
    config = {}
    if settings.get("global"):
        config["global"] = dict(settings["global"])
    config["route"] = {
        "receiver": default,
        "group_by": group_by,
        "group_wait": settings.get("group_wait"),
        "group_interval": settings.get("group_interval"),
        "repeat_interval": settings.get("repeat_interval"),
        "routes": routes,
    }
    config["inhibit_rules"] = inhibit
    config["receivers"] = all_receivers
    return config, errors
