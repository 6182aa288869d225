# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Load generator for the Qwen3-VL service: OpenAI chat completions (vLLM) and WebUI chats.

Pure Python, standard library only, no Ansible. Two faces run this code: the module
``qwen3vl.ha.load_generator`` (drills start it with ``async`` while a fault is injected) and the
CLI ``tools/loadgen``. Unit tests call it directly against the stand-in servers.

What it does:

* **Targets.** ``api`` requests are ``POST {base_url}/v1/chat/completions`` with one user message of a
  text part and a small PNG as a ``data:`` URL, streamed (server-sent events, ``include_usage``) or
  not, with an optional bearer key. ``webui`` requests are ``POST {webui_base_url}/api/chat`` with a
  JSON ``{session_id, message, image}``; session ids are ``<session_prefix>-<n>`` so that a caller can
  read the history back later (``read_session``).
* **Load shape.** Either fixed concurrency (workers that loop, per kind) or a request rate with
  Poisson arrivals (exponential gaps from a seedable RNG, each arrival on its own thread, at most
  ``max_outstanding`` open). Bounded by ``duration`` and/or ``num_requests``, and always by
  ``max_duration``: no request outlives it. Linear ramp-up. Per-request timeout.
* **Safety.** Before any connection the target's host is resolved and every address must be loopback
  or inside the ``allow`` list (IPs, networks, names); connections then go to those checked
  addresses only, so a second DNS answer cannot redirect the load.
* **Records.** One dict per request (see ``RECORD_KEYS``): wall-clock start and end, error class,
  TTFT, inter-token latencies, end-to-end latency, output tokens, which backend answered.
* **Analysis.** ``aggregate`` (named as ``vllm bench serve`` names its results), ``longest_gap``,
  ``timeline``, ``session_summary``: pure functions on record lists. What happened around a fault
  (which failures were in flight, the first answer after it) is drill_report's.
"""

from __future__ import annotations

import base64
import collections
import copy
import http.client
import ipaddress
import json
import math
import os
import random
import re
import socket
import ssl
import statistics
import threading
import time
import urllib.parse

from ansible_collections.qwen3vl.ha.plugins.module_utils import checks
from ansible_collections.qwen3vl.ha.plugins.module_utils.model_checksum import write_atomic

KINDS = ("api", "webui")
MASK = "********"
USER_AGENT = "qwen3vl.ha-loadgen"
DEFAULT_PROMPT = "Describe this image in one short sentence."
DEFAULT_BACKEND_HEADERS = ["X-Standin-Instance"]
API_PATH = "/v1/chat/completions"
WEBUI_CHAT_PATH = "/api/chat"
WEBUI_SESSION_PATH = "/api/sessions/"
# The statistics reported per metric, as `vllm bench serve` reports them (its default percentile is 99).
PERCENTILES = (90, 95, 99)
METRICS = ("ttft", "tpot", "itl", "e2el")
ERROR_CLASSES = ("refused", "timeout", "reset", "stream_cut", "other")  # and http_<status>
RECORD_KEYS = (
    "id",
    "kind",
    "start",
    "end",
    "ok",
    "error",
    "detail",
    "status",
    "ttft",
    "itl",
    "e2el",
    "output_tokens",
    "backend",
    "request_id",
    "session_id",
    "turn",
)
DETAIL_LIMIT = 200  # characters of an error detail kept in a record
MAX_BODY = 4 << 20  # bytes read from a non-streamed answer
MAX_LINE = 1 << 20  # bytes of one server-sent event line
SESSION_PREFIX = re.compile(r"[A-Za-z0-9_-]{1,40}")
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
LOOPBACK = "127.0.0.0/8, ::1"  # always allowed (ipaddress's is_loopback)
LIMITS = {"concurrency": 1024, "request_rate": 10000.0, "max_outstanding": 4096, "max_duration": 86400.0}
JOIN_GRACE = 2.0  # seconds the run waits for its threads after max_duration before it returns anyway

# The image sent with every request: a 64x64 PNG of four coloured quarters (142 bytes; the same
# picture inference_probe generates). Embedded so that a remote run reads no file from the
# collection. Not the 2x2 tests/fixtures/images/tiny.png: Qwen-VL image processors reject images
# smaller than patch x merge size (28 or 32 px) in some versions, and a load test must not fail on that.
IMAGE_PNG_BASE64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAEAAAABACAIAAAAlC+aJAAAAVUlEQVR42u3PMQ0AMAwDsPBHMWDj0mLokc+SCTiTVOWVCQgICAgI"
    "CAgICAgICAgICAgICAgICAictQvzUyUgICAgICAgICAgICAgICAgICAgICAgcLb31+UAH3jEOQAAAABJRU5ErkJggg=="
)
IMAGE_DATA_URL = "data:image/png;base64," + IMAGE_PNG_BASE64

# Every option of both faces. The module's argument_spec is this table less the CLI-only keys
# (help, env); the CLI's long options are the same names with dashes.
CLI_KEYS = ("help", "env")
OPTIONS = {
    "base_url": {"type": "str", "required": True, "help": "scheme://host[:port] of the service (VIP, nginx or vLLM)"},
    "webui_base_url": {"type": "str", "help": "base URL of the WebUI when it is not base_url"},
    "model": {"type": "str", "help": "served model name; needed for api requests"},
    "api_key": {"type": "str", "no_log": True, "env": "LOADGEN_API_KEY", "help": "vLLM API key (bearer)"},
    "url_username": {"type": "str", "help": "basic auth user for WebUI requests (and api ones without api_key)"},
    "url_password": {"type": "str", "no_log": True, "env": "LOADGEN_URL_PASSWORD", "help": "basic auth password"},
    "validate_certs": {"type": "bool", "default": True, "help": "verify TLS certificates and host names"},
    "ca_path": {"type": "path", "help": "PEM file (or hashed directory) of CA certificates for https"},
    "allow": {
        "type": "list",
        "elements": "str",
        "default": [],
        "help": "address, network or name the load may go to besides loopback (repeatable)",
    },
    "api_concurrency": {"type": "int", "help": "api workers that loop (concurrency mode; default 1 if no rate)"},
    "webui_concurrency": {"type": "int", "help": "webui workers that loop (concurrency mode; default 0)"},
    "request_rate": {"type": "float", "help": "requests per second, Poisson arrivals (rate mode)"},
    "api_weight": {"type": "float", "help": "share of api requests in rate mode (default 1)"},
    "webui_weight": {"type": "float", "help": "share of webui requests in rate mode (default 0)"},
    "max_outstanding": {"type": "int", "default": 64, "help": "open requests at most in rate mode"},
    "duration": {"type": "float", "help": "seconds to send requests for"},
    "num_requests": {"type": "int", "help": "requests to send in all"},
    "max_duration": {"type": "float", "default": 600.0, "help": "hard limit in seconds; always applied"},
    "ramp_up": {"type": "float", "default": 0.0, "help": "seconds of linear ramp-up"},
    "timeout": {"type": "float", "default": 60.0, "help": "seconds one request may take"},
    "error_backoff": {"type": "float", "default": 0.1, "help": "seconds a worker waits after a failed request"},
    "seed": {"type": "int", "help": "seed of the arrival RNG (rate mode)"},
    "prompt": {"type": "str", "default": DEFAULT_PROMPT, "help": "text sent with the image"},
    "max_tokens": {"type": "int", "default": 64, "no_log": False, "help": "max_tokens of api requests"},
    "api_stream": {"type": "bool", "default": True, "help": "stream api answers (server-sent events)"},
    "webui_stream": {"type": "bool", "default": False, "help": "ask the WebUI for a streamed answer"},
    "session_prefix": {"type": "str", "help": "WebUI session ids are <prefix>-<n>; default loadgen-<epoch>"},
    "session_turns": {"type": "int", "default": 5, "help": "turns per WebUI session"},
    "backend_headers": {
        "type": "list",
        "elements": "str",
        "default": list(DEFAULT_BACKEND_HEADERS),
        "help": "response headers naming the backend; the first present wins (repeatable)",
    },
}


class LoadgenError(Exception):
    """Options the generator cannot use, or a target it cannot reach by name; the message says which."""


class TargetRefused(LoadgenError):
    """The target is neither loopback nor allowed: nothing was sent (raised before any connection)."""


# --------------------------------------------------------------------------------------------
# Options


def argument_spec():
    """The module's argument_spec: OPTIONS without the CLI-only keys (a fresh copy each call)."""
    return {
        name: {key: copy.deepcopy(value) for key, value in spec.items() if key not in CLI_KEYS}
        for name, spec in OPTIONS.items()
    }


def defaults():
    """Every option at its default (None where it has none)."""
    return {name: copy.deepcopy(spec.get("default")) for name, spec in OPTIONS.items()}


def build_config(params):
    """Check the options and return the run's configuration (a dict); LoadgenError lists every problem.

    ``params`` holds option values (missing ones take their default). The result adds ``mode``
    (``concurrency`` or ``rate``), ``concurrency`` and ``weights`` per kind, and the resolved
    ``webui_base_url`` and ``session_prefix``.
    """
    config = defaults()
    config.update({key: value for key, value in params.items() if key in OPTIONS})
    unknown = sorted(set(params) - set(OPTIONS))
    errors = ["unknown option %s" % name for name in unknown]
    errors += _url_errors(config)
    errors += _shape_errors(config)
    errors += _bound_errors(config)
    errors += _misc_errors(config)
    if errors:
        raise LoadgenError("invalid options: " + "; ".join(errors))
    config["webui_base_url"] = (config["webui_base_url"] or config["base_url"]).rstrip("/")
    config["base_url"] = config["base_url"].rstrip("/")
    if not config["session_prefix"]:
        config["session_prefix"] = "loadgen-%d" % int(time.time())
    return config


def _url_errors(config):
    errors = []
    for name in ("base_url", "webui_base_url"):
        value = config[name]
        if value is None:
            if name == "base_url":
                errors.append("base_url is required")
            continue
        problem = checks.base_url(value, name, "url_username/url_password or api_key")
        if problem:
            errors.append(problem)
        elif urllib.parse.urlsplit(value).path.rstrip("/").endswith("/v1"):
            errors.append("%s is the base URL without /v1 (the generator adds %s), got %r" % (name, API_PATH, value))
    if config["url_password"] and not config["url_username"]:
        errors.append("url_password needs url_username")
    return errors


def _shape_errors(config):
    """Concurrency mode or rate mode, never both; adds ``mode``, ``concurrency``, ``weights`` and ``kinds``."""
    if config["request_rate"] is None:
        config["mode"] = "concurrency"
        errors = _concurrency_errors(config)
        used = [kind for kind in KINDS if config["concurrency"][kind] > 0]
    else:
        config["mode"] = "rate"
        errors = _rate_errors(config)
        used = [kind for kind in KINDS if config["weights"][kind] > 0]
    config["kinds"] = used
    if "api" in used and not config["model"]:
        errors.append("model is required for api requests")
    return errors


def _concurrency_errors(config):
    """Workers per kind (one api worker when neither count is given); no weights in this mode."""
    errors = []
    if config["api_weight"] is not None or config["webui_weight"] is not None:
        errors.append("api_weight/webui_weight apply to request_rate; in concurrency mode set *_concurrency")
    given = {kind: config["%s_concurrency" % kind] for kind in KINDS}
    if all(value is None for value in given.values()):
        given["api"] = 1
    concurrency = {kind: value or 0 for kind, value in given.items()}
    if any(not 0 <= value <= LIMITS["concurrency"] for value in concurrency.values()):
        errors.append("api_concurrency and webui_concurrency must be 0 to %d" % LIMITS["concurrency"])
    elif sum(concurrency.values()) < 1:
        errors.append("api_concurrency + webui_concurrency must be at least 1")
    config["concurrency"] = concurrency
    config["weights"] = dict.fromkeys(KINDS, 0.0)
    return errors


def _rate_errors(config):
    """Rate, weights per kind (all api when neither weight is given) and the cap on open requests."""
    errors = []
    if config["api_concurrency"] is not None or config["webui_concurrency"] is not None:
        errors.append("api_concurrency/webui_concurrency apply without request_rate; in rate mode use max_outstanding")
    rate = config["request_rate"]
    if not 0 < rate <= LIMITS["request_rate"]:
        errors.append("request_rate must be more than 0 and at most %g, got %s" % (LIMITS["request_rate"], rate))
    given = {kind: config["%s_weight" % kind] for kind in KINDS}
    if all(value is None for value in given.values()):
        given["api"] = 1.0
    weights = {kind: float(value or 0) for kind, value in given.items()}
    if not all(_finite(value) and value >= 0 for value in weights.values()) or sum(weights.values()) <= 0:
        errors.append("api_weight and webui_weight must be finite, 0 or more, and not both 0")
    if not 1 <= config["max_outstanding"] <= LIMITS["max_outstanding"]:
        errors.append("max_outstanding must be 1 to %d" % LIMITS["max_outstanding"])
    config["concurrency"] = dict.fromkeys(KINDS, 0)
    config["weights"] = weights
    return errors


def _bound_errors(config):
    errors = []
    max_duration = config["max_duration"]
    if not _finite(max_duration) or not 0 < max_duration <= LIMITS["max_duration"]:
        errors.append("max_duration must be more than 0 and at most %g seconds" % LIMITS["max_duration"])
    duration = config["duration"]
    if duration is not None:
        if not _finite(duration) or duration <= 0:
            errors.append("duration must be more than 0 seconds, got %s" % duration)
        elif _finite(max_duration) and duration > max_duration:
            errors.append("duration (%s) must not be longer than max_duration (%s)" % (duration, max_duration))
    if config["num_requests"] is not None and config["num_requests"] < 1:
        errors.append("num_requests must be 1 or more, got %s" % config["num_requests"])
    for name in ("ramp_up", "error_backoff"):
        if not _finite(config[name]) or config[name] < 0:
            errors.append("%s must be 0 or more seconds, got %s" % (name, config[name]))
    if not _finite(config["timeout"]) or config["timeout"] <= 0:
        errors.append("timeout must be more than 0 seconds, got %s" % config["timeout"])
    return errors


def _finite(value):
    return value is not None and not math.isnan(value) and not math.isinf(value)


def _misc_errors(config):
    errors = []
    if config["max_tokens"] < 1:
        errors.append("max_tokens must be 1 or more, got %s" % config["max_tokens"])
    if config["session_turns"] < 1:
        errors.append("session_turns must be 1 or more, got %s" % config["session_turns"])
    prefix = config["session_prefix"]
    if prefix is not None and not SESSION_PREFIX.fullmatch(prefix):
        errors.append("session_prefix must match [A-Za-z0-9_-]{1,40} (WebUI session ids), got %r" % prefix)
    for name in config["backend_headers"] or []:
        if not HEADER_NAME.fullmatch(name or ""):
            errors.append("backend_headers: %r is not an HTTP header name" % name)
    if not config["prompt"]:
        errors.append("prompt must not be empty")
    return errors


def redacted(config):
    """The configuration as it may be shown or stored: secrets replaced by ``********``."""
    shown = copy.deepcopy(config)
    for name, spec in OPTIONS.items():
        if spec.get("no_log") and shown.get(name):
            shown[name] = MASK
    return shown


# --------------------------------------------------------------------------------------------
# Safety: where the load may go


def resolve_allowlist(entries):
    """(networks, unresolved): every entry as an ip_network; names are resolved to all their addresses.

    An entry is an IP address (a single host), a network in CIDR notation (``172.29.72.0/24``,
    host bits allowed) or a host name. Names that do not resolve are returned in ``unresolved``
    (a caller decides whether that is worth a warning).
    """
    networks = []
    unresolved = []
    for entry in entries or []:
        text = str(entry).strip()
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
            continue
        except ValueError:
            pass
        addresses = _resolve(text, None)
        if addresses:
            networks.extend(ipaddress.ip_network(address) for address in addresses)
        else:
            unresolved.append(text)
    return networks, unresolved


def _resolve(host, port):
    """The addresses ``host`` resolves to, in the resolver's order, without duplicates ([] when none)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        return []
    addresses = []
    for info in infos:
        address = info[4][0].split("%", 1)[0]  # an IPv6 zone id is not part of the address
        if address not in addresses:
            addresses.append(address)
    return addresses


def disallowed(addresses, networks):
    """The addresses that are neither loopback nor inside one of ``networks``."""
    refused = []
    for address in addresses:
        ip = ipaddress.ip_address(address)
        if ip.is_loopback or any(ip.version == net.version and ip in net for net in networks):
            continue
        refused.append(address)
    return refused


def check_target(url, networks):
    """Resolve ``url``'s host and return its addresses when every one is loopback or allowed.

    Raises TargetRefused (nothing is sent) naming the target, what it resolved to and the allowed
    set; LoadgenError when the name does not resolve. Only a resolver lookup happens here.
    """
    parsed = urllib.parse.urlsplit(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = _resolve(parsed.hostname, port)
    if not addresses:
        raise LoadgenError("cannot resolve the host of %s" % url)
    refused = disallowed(addresses, networks)
    if refused:
        allowed = ", ".join([LOOPBACK] + [str(net) for net in networks])
        raise TargetRefused(
            "refusing to send load to %s: %s is neither loopback nor in the allowed set [%s]; "
            "allow it explicitly (allow / --allow, or --inventory) if it is yours" % (url, ", ".join(refused), allowed)
        )
    return addresses


class PinnedConnection(http.client.HTTPConnection):
    """An HTTP or HTTPS connection to ``host`` that connects only to addresses checked beforehand.

    The Host header and the TLS server name stay the URL's name; the TCP connection goes to the
    first of ``addresses`` that accepts it, with no second DNS lookup (which could answer differently).
    """

    def __init__(self, host, port, addresses, tls, timeout):
        super().__init__(host, port, timeout=timeout)
        self.addresses = addresses
        self.tls = tls
        if tls is not None:
            self.default_port = 443

    def connect(self):
        """Open the TCP connection (and TLS over it) to a checked address."""
        error = OSError("no address to connect to")
        for address in self.addresses:
            try:
                sock = socket.create_connection((address, self.port), self.timeout)
                break
            except OSError as exc:
                error = exc
        else:
            raise error
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            try:
                sock = self.tls.wrap_socket(sock, server_hostname=self.host)
            except BaseException:
                sock.close()
                raise
        self.sock = sock


class Target:
    """Where one kind of request goes: the base URL's parts and its checked addresses."""

    def __init__(self, url, addresses, tls):
        parsed = urllib.parse.urlsplit(url)
        self.url = url
        self.host = parsed.hostname
        self.port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self.prefix = parsed.path.rstrip("/")
        self.addresses = addresses
        self.tls = tls if parsed.scheme == "https" else None

    def connection(self, timeout):
        """A new, unopened connection (it opens on the first request)."""
        return PinnedConnection(self.host, self.port, self.addresses, self.tls, timeout)


def _tls_context(config):
    context = ssl.create_default_context()
    if config["ca_path"]:
        if os.path.isdir(config["ca_path"]):
            context.load_verify_locations(capath=config["ca_path"])
        else:
            context.load_verify_locations(cafile=config["ca_path"])
    if not config["validate_certs"]:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def prepare(config):
    """Check where the load would go, before anything is sent: returns the plan for ``run``.

    The plan holds one Target per kind in use (addresses resolved and checked against loopback and
    ``allow``) and ``warnings`` (allow entries that did not resolve). Raises TargetRefused or
    LoadgenError; never opens a connection.
    """
    networks, unresolved = resolve_allowlist(config["allow"])
    urls = {"api": config["base_url"], "webui": config["webui_base_url"]}
    try:
        tls = _tls_context(config) if any(url.startswith("https:") for url in urls.values()) else None
    except (OSError, ssl.SSLError) as exc:
        raise LoadgenError("cannot load ca_path %s: %s" % (config["ca_path"], exc)) from None
    # Both URLs are checked even when one kind sends nothing: read_session() uses the WebUI's.
    targets = {kind: Target(url, check_target(url, networks), tls) for kind, url in urls.items()}
    warnings = ["allow: %s does not resolve; left out" % name for name in unresolved]
    return {"targets": targets, "networks": networks, "warnings": warnings}


# --------------------------------------------------------------------------------------------
# One request


class Job:
    """What one request sends (a POST: path, body, headers), whether its answer streams, its WebUI session turn."""

    def __init__(self, kind, path, body, headers, *, stream, session=None):
        self.kind = kind
        self.path = path
        self.body = body
        self.headers = headers
        self.stream = stream
        self.session_id, self.turn = session or (None, None)


class StreamError(Exception):
    """The server put an error object into the event stream."""


def auth_headers(config, kind):
    """The Authorization header for ``kind``: the bearer key for api requests, else basic auth (or none)."""
    if kind == "api" and config["api_key"]:
        return {"Authorization": "Bearer " + config["api_key"]}
    if config["url_username"]:
        pair = "%s:%s" % (config["url_username"], config["url_password"] or "")
        return {"Authorization": "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")}
    return {}


def api_body(config):
    """The chat completion request (JSON bytes): a text part and the image, streamed with usage or not."""
    body = {
        "model": config["model"],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": config["prompt"]},
                    {"type": "image_url", "image_url": {"url": IMAGE_DATA_URL}},
                ],
            }
        ],
        "max_tokens": config["max_tokens"],
        "stream": config["api_stream"],
    }
    if config["api_stream"]:
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body).encode("utf-8")


def webui_body(config, session_id):
    """The WebUI chat request (JSON bytes) for one turn of ``session_id``."""
    body = {"session_id": session_id, "message": config["prompt"], "image": IMAGE_DATA_URL}
    if config["webui_stream"]:
        body["stream"] = True
    return json.dumps(body).encode("utf-8")


def blank_record(job, number):
    """A record with every key, before the request is sent."""
    record = dict.fromkeys(RECORD_KEYS)
    record.update(id=number, kind=job.kind, ok=False, itl=[], session_id=job.session_id, turn=job.turn)
    return record


def perform(target, job, record, deadline, backend_headers):
    """Send ``job`` to ``target`` and read the answer into ``record``; never raises.

    ``deadline`` (time.monotonic) bounds the whole request: connect, every read, the stream.
    Times: ``start``/``end`` are wall clock (time.time), durations come from perf_counter.
    """
    started = time.perf_counter()
    record["start"] = time.time()
    conn = None
    try:
        conn = target.connection(_remaining(deadline))
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **job.headers}
        conn.request("POST", target.prefix + job.path, body=job.body, headers=headers)
        _settimeout(conn, deadline)
        response = conn.getresponse()
        _read_headers(response, record, backend_headers)
        if not 200 <= response.status < 300:
            record["error"] = "http_%d" % response.status
            record["detail"] = _excerpt(response)
        elif job.stream:
            _read_stream(conn, response, record, started, deadline)
        else:
            _read_answer(_read_body(conn, response, deadline), record, job.kind)
    except Exception as exc:  # noqa: BLE001 - every failure is a measurement, classified in the record
        record["error"], record["detail"] = classify(exc, job.stream)
    finally:
        if conn is not None:
            conn.close()
    record["e2el"] = round(time.perf_counter() - started, 6)
    record["end"] = record["start"] + record["e2el"]
    record["ok"] = record["error"] is None
    return record


def _remaining(deadline):
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("request deadline passed")
    return left


def _settimeout(conn, deadline):
    """Let the next socket operation wait only until the request's deadline."""
    if conn.sock is not None:
        conn.sock.settimeout(_remaining(deadline))


def _read_headers(response, record, backend_headers):
    record["status"] = response.status
    record["request_id"] = response.getheader("X-Request-ID")
    for name in backend_headers:
        value = response.getheader(name)
        if value:
            record["backend"] = value
            break


def _excerpt(response):
    """The start of an error answer, on one line (the server's own message, usually)."""
    try:
        raw = response.read(DETAIL_LIMIT * 2)
    except (OSError, http.client.HTTPException):
        return None
    text = " ".join(raw.decode("utf-8", "replace").split())
    return text[:DETAIL_LIMIT] or None


def _read_body(conn, response, deadline):
    """A whole non-streamed body (at most MAX_BODY bytes), read piece by piece within the deadline."""
    pieces = []
    size = 0
    while size < MAX_BODY:
        _settimeout(conn, deadline)
        piece = response.read1(min(65536, MAX_BODY - size))
        if not piece:
            break
        pieces.append(piece)
        size += len(piece)
    return b"".join(pieces)


def _read_answer(body, record, kind):
    """A non-streamed answer: a chat completion (api) or the WebUI's ``{answer, instance}``."""
    try:
        answer = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        answer = None
    if not isinstance(answer, dict):
        record["error"], record["detail"] = "other", "the answer is not a JSON object"
        return
    if kind == "webui":
        if not isinstance(answer.get("answer"), str):
            record["error"], record["detail"] = "other", "the WebUI answer has no 'answer' text"
        # The WebUI names its instance in the body when no backend header is there.
        if record["backend"] is None and isinstance(answer.get("instance"), str):
            record["backend"] = answer["instance"]
        return
    choices = answer.get("choices")
    if not isinstance(choices, list) or not choices:
        record["error"], record["detail"] = "other", "the answer has no choices"
        return
    usage = answer.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
        record["output_tokens"] = usage["completion_tokens"]


def _read_stream(conn, response, record, started, deadline):
    """Read server-sent events: time to the first content token, the gaps between tokens, usage.

    The stream is complete at ``data: [DONE]`` (or, without it, at the end of the connection after a
    ``finish_reason``); anything that ends earlier is a ``stream_cut``.
    """
    token_times = []
    done = finished = False
    try:
        while not done:
            _settimeout(conn, deadline)
            line = response.readline(MAX_LINE)
            if not line:
                break
            data = _sse_data(line)
            if data == "[DONE]":
                done = True
            elif data is not None:
                finished = _read_event(data, record, token_times) or finished
    finally:  # a stream that fails half-way keeps the timing of the tokens it got
        if token_times:
            record["ttft"] = round(token_times[0] - started, 6)
            record["itl"] = [round(b - a, 6) for a, b in zip(token_times, token_times[1:], strict=False)]
        if record["output_tokens"] is None:
            record["output_tokens"] = len(token_times)
    if not (done or finished):
        record["error"] = "stream_cut"
        record["detail"] = "the stream ended after %d token(s) without [DONE]" % len(token_times)


def _sse_data(line):
    """The payload of a ``data:`` line of a server-sent event stream, or None for any other line."""
    text = line.decode("utf-8", "replace").strip()
    if not text.startswith("data:"):
        return None
    return text[5:].strip()


def _read_event(data, record, token_times):
    """Take one event's usage and content tokens; True when it carries a finish_reason."""
    try:
        event = json.loads(data)
    except ValueError:
        return False
    if not isinstance(event, dict):
        return False
    if event.get("error"):
        error = event["error"]
        raise StreamError(error.get("message", str(error)) if isinstance(error, dict) else str(error))
    usage = event.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
        record["output_tokens"] = usage["completion_tokens"]
    finished = False
    for choice in event.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict) and any(delta.get(key) for key in ("content", "reasoning_content", "reasoning")):
            token_times.append(time.perf_counter())
        finished = finished or bool(choice.get("finish_reason"))
    return finished


def classify(exc, stream):
    """(error class, short detail) for an exception raised while a request was sent or read."""
    detail = ("%s: %s" % (type(exc).__name__, exc)).strip(": ")[:DETAIL_LIMIT]
    if isinstance(exc, ConnectionRefusedError):
        return "refused", detail
    if isinstance(exc, TimeoutError):
        return "timeout", detail
    if isinstance(exc, http.client.IncompleteRead):
        return ("stream_cut" if stream else "reset"), detail
    if isinstance(exc, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        return "reset", detail  # http.client.RemoteDisconnected is a ConnectionResetError
    if isinstance(exc, StreamError):
        return "other", "error event in the stream: %s" % str(exc)[:DETAIL_LIMIT]
    return "other", detail


# --------------------------------------------------------------------------------------------
# The run


class SessionPool:
    """WebUI session ids: each session gets ``turns`` turns, one at a time, and then a new one starts.

    Ids are ``<prefix>-<n>`` with n = 00000, 00001, ... in the order sessions are opened, so a
    caller can read them back (and a session is never asked two things at once).
    """

    def __init__(self, prefix, turns):
        self.prefix = prefix
        self.turns = turns
        self.free = collections.deque()
        self.opened = 0
        self.lock = threading.Lock()

    def acquire(self):
        """(session id, turn number from 1) for the next turn."""
        with self.lock:
            if self.free:
                session_id, done = self.free.popleft()
            else:
                session_id, done = "%s-%05d" % (self.prefix, self.opened), 0
                self.opened += 1
        return session_id, done + 1

    def release(self, session_id, turn):
        """Give the session back after its turn ``turn``; it is used again until it has all its turns."""
        if turn < self.turns:
            with self.lock:
                self.free.append((session_id, turn))


class Runner:
    """One run: the threads that send, the records they produce, and when to stop.

    Concurrency mode starts one thread per worker (started one after another over ``ramp_up``);
    rate mode starts an arrival thread that sleeps exponential gaps and starts a thread per request.
    The main thread watches the clock: at ``duration`` (or ``max_duration``) no new request starts;
    requests in flight may finish until ``max_duration``, which is every request's last deadline.
    """

    def __init__(self, config, plan, progress=None, progress_interval=1.0):
        self.config = config
        self.targets = plan["targets"]
        self.progress = progress
        self.progress_interval = progress_interval
        self.lock = threading.Condition()
        self.stop = threading.Event()
        self.records = []
        self.sent = 0
        self.outstanding = 0
        self.dropped = 0
        self.stopped_by = None
        self.sessions = SessionPool(config["session_prefix"], config["session_turns"])
        self.api_body = api_body(config) if "api" in config["kinds"] else None
        self.senders = []  # the arrival thread or the workers (request threads count in outstanding)
        self.t0 = self.hard_deadline = self.soft_deadline = self.soft_reason = None

    # -- sending ---------------------------------------------------------------------------

    def take_ticket(self):
        """The next request number, or None when no more requests may start."""
        with self.lock:
            if time.monotonic() >= self.soft_deadline:
                self._stop(self.soft_reason)  # the main thread may wake a little later
            if self.stop.is_set():
                return None
            limit = self.config["num_requests"]
            if limit is not None and self.sent >= limit:
                return None
            self.sent += 1
            self.outstanding += 1
            if limit is not None and self.sent >= limit:
                self._stop("num_requests")
            return self.sent

    def make_job(self, kind):
        """The request to send next for ``kind`` (a WebUI one takes a session turn)."""
        config = self.config
        if kind == "api":
            return Job("api", API_PATH, self.api_body, auth_headers(config, "api"), stream=config["api_stream"])
        session_id, turn = self.sessions.acquire()
        body = webui_body(config, session_id)
        headers = auth_headers(config, "webui")
        return Job("webui", WEBUI_CHAT_PATH, body, headers, stream=config["webui_stream"], session=(session_id, turn))

    def execute(self, kind, number):
        """Send one request of ``kind`` as number ``number`` and keep its record."""
        job = self.make_job(kind)
        record = blank_record(job, number)
        deadline = min(time.monotonic() + self.config["timeout"], self.hard_deadline)
        perform(self.targets[kind], job, record, deadline, self.config["backend_headers"] or [])
        if record["error"] == "timeout" and time.monotonic() >= self.hard_deadline:
            record["error"], record["detail"] = "other", "aborted: max_duration reached"
        record["detail"] = _mask(record["detail"], self.config)
        if job.session_id is not None:
            self.sessions.release(job.session_id, job.turn)
        with self.lock:
            self.records.append(record)
            self.outstanding -= 1
            self.lock.notify_all()
        return record

    def worker(self, kind, delay):
        """Concurrency mode: wait ``delay`` (ramp-up), then send requests back to back until told to stop."""
        if self.stop.wait(delay):
            return
        while True:
            number = self.take_ticket()
            if number is None:
                return
            record = self.execute(kind, number)
            if not record["ok"] and self.stop.wait(self.config["error_backoff"]):
                return

    def arrivals(self):
        """Rate mode: Poisson arrivals at ``request_rate``, ramped up linearly by thinning.

        Candidate arrivals come at the full rate (exponential gaps); during ramp-up one at time t is
        kept with probability t / ramp_up, which makes the kept ones a Poisson process whose rate
        rises linearly. Arrivals that find ``max_outstanding`` requests open are not sent (counted
        in ``dropped``).
        """
        config = self.config
        rng = random.Random(config["seed"])
        kinds = [kind for kind in KINDS if config["weights"][kind] > 0]
        weights = [config["weights"][kind] for kind in kinds]
        at = 0.0
        while True:
            at += rng.expovariate(config["request_rate"])
            keep = config["ramp_up"] <= 0 or at >= config["ramp_up"] or rng.random() < at / config["ramp_up"]
            kind = rng.choices(kinds, weights)[0]
            if not keep:
                continue
            if self.stop.wait(max(0.0, self.t0 + at - time.monotonic())):
                return
            with self.lock:
                full = self.outstanding >= config["max_outstanding"]
                if full:
                    self.dropped += 1
            if full:
                continue
            number = self.take_ticket()
            if number is None:
                return
            self._start_thread(self.execute, kind, number)  # tracked by self.outstanding

    def _start_thread(self, target, *args):
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        return thread

    def _start_senders(self):
        """Start the threads that create requests: the arrival thread, or one worker per slot."""
        config = self.config
        if config["mode"] == "rate":
            self.senders.append(self._start_thread(self.arrivals))
            return
        # Worker i of a kind with n workers sits at i/n of the ramp, so the kinds ramp up together.
        slots = sorted(
            (index / config["concurrency"][kind], kind)
            for kind in KINDS
            for index in range(config["concurrency"][kind])
        )
        for position, slot in enumerate(slots):
            delay = config["ramp_up"] * position / len(slots)
            self.senders.append(self._start_thread(self.worker, slot[1], delay))

    # -- watching --------------------------------------------------------------------------

    def _stop(self, reason):
        if not self.stop.is_set():
            self.stopped_by = reason
            self.stop.set()

    def _soft_deadline(self):
        """(monotonic time after which no request starts, the stop reason it stands for)."""
        config = self.config
        if config["duration"] is not None and config["duration"] < config["max_duration"]:
            return self.t0 + config["duration"], "duration"
        return self.t0 + config["max_duration"], "max_duration"

    def run(self):
        """Send the load; returns when every request has ended (at the latest max_duration + a short grace)."""
        self.t0 = time.monotonic()
        start_wall = time.time()
        self.hard_deadline = self.t0 + self.config["max_duration"]
        self.soft_deadline, self.soft_reason = self._soft_deadline()
        next_report = self.t0 + self.progress_interval if self.progress is not None else math.inf
        self._start_senders()
        while not self._finished():
            now = time.monotonic()
            if now >= self.soft_deadline:
                with self.lock:
                    self._stop(self.soft_reason)
            if now >= self.hard_deadline + JOIN_GRACE:
                break
            if now >= next_report:
                self.progress(self.snapshot())
                next_report += self.progress_interval
            wake = min(next_report, now + 0.25, self.soft_deadline if not self.stop.is_set() else math.inf)
            with self.lock:  # woken early by every request that ends
                self.lock.wait(max(0.001, wake - time.monotonic()))
        with self.lock:
            self._stop("max_duration")
            records = sorted(self.records, key=_record_id)
        return {
            "started": start_wall,
            "ended": start_wall + (time.monotonic() - self.t0),
            "stopped_by": self.stopped_by,
            "sent": len(records),
            "dropped": self.dropped,
            "records": records,
        }

    def _finished(self):
        """True once no request may start, none is open and every sending thread has returned."""
        with self.lock:
            idle = self.stop.is_set() and self.outstanding == 0
        return idle and not any(thread.is_alive() for thread in self.senders)

    def snapshot(self, window=5.0):
        """Progress so far: elapsed, sent, ok, failed, in flight, req/s and p50 e2el over the last ``window`` s."""
        now_wall = time.time()
        with self.lock:
            records = list(self.records)
            outstanding = self.outstanding
        recent = [r for r in records[-5000:] if r["end"] >= now_wall - window]
        elapsed = time.monotonic() - self.t0
        ok = sum(1 for r in records if r["ok"])
        median = percentile(sorted(r["e2el"] for r in recent if r["ok"]), 50)
        return {
            "elapsed": elapsed,
            "sent": len(records) + outstanding,
            "ok": ok,
            "failed": len(records) - ok,
            "in_flight": outstanding,
            "rate": len(recent) / max(min(window, elapsed), 0.001),
            "p50_e2el_ms": None if median is None else median * 1000,
        }


def _record_id(record):
    return record["id"]


def _mask(text, config):
    if not text:
        return text
    for name, spec in OPTIONS.items():
        secret = config.get(name) if spec.get("no_log") else None
        if secret:
            text = text.replace(secret, MASK)
    return text


def run(config, plan=None, progress=None, progress_interval=1.0):
    """Run the load described by ``config`` (from build_config) and return the full result.

    ``plan`` is prepare(config)'s (made here when not given: TargetRefused is raised before any
    connection). ``progress``, when given, is called about every ``progress_interval`` seconds with
    Runner.snapshot()'s dict. The result: ``config`` (redacted), ``started``/``ended`` (wall clock),
    ``stopped_by`` (``duration``, ``num_requests`` or ``max_duration``), ``sent``, ``dropped``,
    ``records`` and ``aggregates`` (aggregate() over the whole run).
    """
    plan = plan if plan is not None else prepare(config)
    outcome = Runner(config, plan, progress, progress_interval).run()
    result = {"config": redacted(config), "warnings": list(plan["warnings"]), **outcome}
    result["aggregates"] = aggregate(result["records"], result["started"], result["ended"])
    return result


def write_results(path, result):
    """Write ``result`` as JSON to ``path`` atomically (a temporary file in the same directory, renamed)."""
    write_atomic(path, json.dumps(result, separators=(",", ":")) + "\n", 0o644)


def read_session(config, session_id, plan=None, timeout=10.0):
    """The WebUI's history of ``session_id`` (``GET {webui_base_url}/api/sessions/<id>``), as a list.

    Goes through the same allow-list check as the load. Raises LoadgenError when the WebUI does
    not answer 200 with a JSON list (a 404 means the WebUI has no such session).
    """
    plan = plan if plan is not None else prepare(config)
    target = plan["targets"]["webui"]
    conn = target.connection(timeout)
    try:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **auth_headers(config, "webui")}
        conn.request(
            "GET", target.prefix + WEBUI_SESSION_PATH + urllib.parse.quote(session_id, safe=""), headers=headers
        )
        response = conn.getresponse()
        body = response.read(MAX_BODY)
    except (OSError, http.client.HTTPException) as exc:
        raise LoadgenError("cannot read session %s from %s: %s" % (session_id, target.url, exc)) from None
    finally:
        conn.close()
    try:
        history = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        history = None
    if response.status != 200 or not isinstance(history, list):
        raise LoadgenError("session %s: %s answered HTTP %d" % (session_id, target.url, response.status))
    return history


# --------------------------------------------------------------------------------------------
# Analysis: pure functions on record lists


def percentile(sorted_values, p):
    """The p-th percentile of an ascending list with linear interpolation between the closest ranks
    (numpy's default method, which ``vllm bench serve`` uses); None for an empty list."""
    if not sorted_values:
        return None
    rank = (len(sorted_values) - 1) * p / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


def metric_stats(name, seconds):
    """``mean_/median_/std_/p90_/p95_/p99_<name>_ms`` of a list of durations in seconds (None when empty).

    std is the population standard deviation (numpy's default, as vllm bench serve reports it).
    """
    values = sorted(seconds)
    stats = {
        "mean_%s_ms" % name: statistics.fmean(values) * 1000 if values else None,
        "median_%s_ms" % name: statistics.median(values) * 1000 if values else None,
        "std_%s_ms" % name: statistics.pstdev(values) * 1000 if values else None,
    }
    for p in PERCENTILES:
        value = percentile(values, p)
        stats["p%d_%s_ms" % (p, name)] = None if value is None else value * 1000
    return stats


def tpot(record):
    """Time per output token after the first, as vLLM defines it: (e2el - ttft) / (output_tokens - 1);
    None for a request with one token or fewer, or without a ttft."""
    tokens = record.get("output_tokens") or 0
    if record.get("ttft") is None or tokens <= 1:
        return None
    return (record["e2el"] - record["ttft"]) / (tokens - 1)


def summarise(records, duration):
    """The ``vllm bench serve`` figures of ``records`` over ``duration`` seconds, and error counts.

    Latencies come from successful requests only; ttft and tpot from those that have one (a
    non-streamed WebUI answer has none). Throughputs are None when ``duration`` is not positive.
    """
    good = [r for r in records if r["ok"]]
    tokens = sum(r["output_tokens"] or 0 for r in good)
    errors = collections.Counter(r["error"] for r in records if not r["ok"])
    summary = {
        "duration": duration,
        "completed": len(good),
        "failed": len(records) - len(good),
        "total_output_tokens": tokens,
        "request_throughput": len(good) / duration if duration > 0 else None,
        "output_throughput": tokens / duration if duration > 0 else None,
    }
    values = {
        "ttft": [r["ttft"] for r in good if r["ttft"] is not None],
        "tpot": [value for value in map(tpot, good) if value is not None],
        "itl": [gap for r in good for gap in r["itl"] or []],
        "e2el": [r["e2el"] for r in good],
    }
    for name in METRICS:
        summary.update(metric_stats(name, values[name]))
    summary["errors"] = dict(sorted(errors.items()))
    return summary


def aggregate(records, start=None, end=None):
    """The run's figures over the requests that STARTED in [start, end), overall and per kind.

    ``duration`` is end - start; a bound left out is taken from the records (the first start, the
    last end). Keys as ``vllm bench serve`` names them (``completed``, ``failed``,
    ``total_output_tokens``, ``request_throughput``, ``output_throughput``, ``mean_ttft_ms``,
    ``p99_itl_ms`` ...), plus ``errors`` (count per error class), ``start``, ``end`` and
    ``per_kind`` (the same figures per request kind, over the same duration).
    """
    chosen = [r for r in records if (start is None or r["start"] >= start) and (end is None or r["start"] < end)]
    low = start if start is not None else min((r["start"] for r in chosen), default=None)
    high = end if end is not None else max((r["end"] for r in chosen), default=None)
    duration = max(0.0, high - low) if low is not None and high is not None else 0.0
    result = {"start": low, "end": high, **summarise(chosen, duration)}
    kinds = sorted({r["kind"] for r in chosen})
    result["per_kind"] = {kind: summarise([r for r in chosen if r["kind"] == kind], duration) for kind in kinds}
    return result


def longest_gap(records, start, end):
    """The longest window inside [start, end] in which no successful request completed.

    Returns ``{"seconds", "from", "to"}``; with no success in the window it is the whole window.
    """
    if end < start:
        raise ValueError("longest_gap: end (%s) is before start (%s)" % (end, start))
    points = [start, *sorted(r["end"] for r in records if r["ok"] and start <= r["end"] <= end), end]
    best = (0.0, start, start)
    for low, high in zip(points, points[1:], strict=False):
        if high - low > best[0]:
            best = (high - low, low, high)
    return {"seconds": best[0], "from": best[1], "to": best[2]}


def timeline(records, bucket=1.0, origin=None):
    """Per-bucket counts by start time, for plotting: ``t`` (bucket start, wall clock), ``started``,
    ``ok``, ``failed`` (count per error class) and ``p50_e2el_ms``/``p95_e2el_ms`` of the successful
    requests. Buckets run from ``origin`` (default: the first start) to the last start, empty ones
    included; requests that started before ``origin`` are left out."""
    if bucket <= 0:
        raise ValueError("timeline: bucket must be more than 0 seconds")
    if not records:
        return []
    origin = min(r["start"] for r in records) if origin is None else origin
    last = max(r["start"] for r in records)
    count = int(math.floor((last - origin) / bucket)) + 1 if last >= origin else 0
    rows = [{"t": origin + i * bucket, "started": 0, "ok": 0, "failed": {}, "latencies": []} for i in range(count)]
    for record in records:
        index = int(math.floor((record["start"] - origin) / bucket))
        if not 0 <= index < count:
            continue
        row = rows[index]
        row["started"] += 1
        if record["ok"]:
            row["ok"] += 1
            row["latencies"].append(record["e2el"])
        else:
            row["failed"][record["error"]] = row["failed"].get(record["error"], 0) + 1
    for row in rows:
        latencies = sorted(row.pop("latencies"))
        for p in (50, 95):
            value = percentile(latencies, p)
            row["p%d_e2el_ms" % p] = None if value is None else value * 1000
    return rows


def session_summary(records):
    """Per WebUI session id: turns sent, turns that succeeded, and the backends that answered."""
    sessions = {}
    for record in sorted(records, key=lambda r: (r["start"], r["id"])):
        if record.get("session_id") is None:
            continue
        entry = sessions.setdefault(record["session_id"], {"turns": 0, "ok": 0, "backends": []})
        entry["turns"] += 1
        entry["ok"] += 1 if record["ok"] else 0
        if record["backend"] and record["backend"] not in entry["backends"]:
            entry["backends"].append(record["backend"])
    return sessions


# --------------------------------------------------------------------------------------------
# The summary table (CLI), in the layout of `vllm bench serve`


def _line(label, value, digits=2):
    if value is None:
        shown = "-"
    elif isinstance(value, float):
        shown = "%.*f" % (digits, value)
    else:
        shown = str(value)
    return "%-40s %-10s" % (label, shown)


def format_summary(result):
    """The run's summary as text: the layout of ``vllm bench serve``'s result table, then per kind and errors."""
    agg = result["aggregates"]
    config = result["config"]
    lines = [" Load Generator Result ".center(50, "=")]
    lines.append(_line("Successful requests:", agg["completed"]))
    lines.append(_line("Failed requests:", agg["failed"]))
    if config["mode"] == "rate":
        lines.append(_line("Request rate configured (RPS):", float(config["request_rate"])))
        lines.append(_line("Arrivals dropped (max outstanding):", result["dropped"]))
    else:
        lines.append(_line("Maximum request concurrency:", sum(config["concurrency"].values())))
    lines.append(_line("Benchmark duration (s):", float(agg["duration"])))
    lines.append(_line("Total generated tokens:", agg["total_output_tokens"]))
    lines.append(_line("Request throughput (req/s):", agg["request_throughput"]))
    lines.append(_line("Output token throughput (tok/s):", agg["output_throughput"]))
    sections = (
        ("ttft", "TTFT", "Time to First Token"),
        ("tpot", "TPOT", "Time per Output Token (excl. 1st token)"),
        ("itl", "ITL", "Inter-token Latency"),
        ("e2el", "E2EL", "End-to-end Latency"),
    )
    for key, name, header in sections:
        lines.append(header.center(50, "-"))
        lines.append(_line("Mean %s (ms):" % name, agg["mean_%s_ms" % key]))
        lines.append(_line("Median %s (ms):" % name, agg["median_%s_ms" % key]))
        for p in PERCENTILES:
            lines.append(_line("P%d %s (ms):" % (p, name), agg["p%d_%s_ms" % (p, key)]))
    lines.append("Per kind".center(50, "-"))
    for kind, figures in agg["per_kind"].items():
        lines.append(_line("%s ok / failed:" % kind, "%d / %d" % (figures["completed"], figures["failed"])))
        lines.append(_line("%s median E2EL (ms):" % kind, figures["median_e2el_ms"]))
    if agg["errors"]:
        lines.append("Errors".center(50, "-"))
        lines.extend(_line("%s:" % name, count) for name, count in agg["errors"].items())
    lines.append("=" * 50)
    return "\n".join(lines)
