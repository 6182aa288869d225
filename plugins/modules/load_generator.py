#!/usr/bin/python
# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: load_generator
short_description: Send chat load to the Qwen3-VL service (vLLM API and WebUI) and measure it
version_added: 0.6.0
description:
  - "Sends image chat requests from the host the task runs on (drills run it with C(delegate_to: localhost))
    and measures every one of them, so that a drill can tell what users saw while it broke something."
  - "C(api) requests: C(POST {base_url}/v1/chat/completions), one user message of a text part
    (O(prompt)) and a 64x64 PNG as a base64 C(data:) URL, O(max_tokens); streamed (server-sent events,
    C(stream_options.include_usage)) unless O(api_stream=false). The key, when given, is sent as
    C(Authorization: Bearer)."
  - "C(webui) requests: C(POST {webui_base_url}/api/chat) with C({session_id, message, image}).
    Session ids are C(<session_prefix>-00000), C(-00001) ... each used for O(session_turns) turns, one
    turn at a time, so a later task can read the history back (C(GET /api/sessions/<id>)) and check
    continuity across a failover."
  - "Load shape: fixed concurrency (O(api_concurrency) and O(webui_concurrency) workers sending back to
    back; the default is one C(api) worker) or, with O(request_rate), Poisson arrivals
    (exponential gaps, seeded by O(seed)) split between the kinds by O(api_weight) and O(webui_weight),
    each arrival on its own thread and at most O(max_outstanding) open. O(ramp_up) starts the workers,
    or raises the rate, linearly."
  - "It stops starting requests at O(duration) or after O(num_requests), whichever comes first, and
    always at O(max_duration); requests still open may finish until O(max_duration), which no request
    outlives (those cut there are recorded as failed, error class C(other))."
  - "Safety: before anything is sent the host of O(base_url) and O(webui_base_url) is resolved and
    every address must be loopback (127.0.0.0/8, ::1) or inside O(allow); otherwise the task fails
    naming the target and the allowed set. Connections then go to the checked addresses only. No
    proxy is used."
  - "The full result (the options with the secrets replaced by C(********), one record per request, the
    aggregates) is written as JSON to O(results_path), atomically. The task returns the aggregates and
    that path, not the records, which can be tens of thousands."
  - "Per request record: C(id), C(kind), C(start) and C(end) (wall clock, seconds since the epoch, to
    compare with the time of a fault), C(ok), C(error) (C(refused), C(timeout), C(reset),
    C(http_<status>), C(stream_cut) for a stream that ended before C([DONE]) or a C(finish_reason),
    C(other)), C(detail), C(status), C(ttft) (seconds to the first content token; null unless streamed),
    C(itl) (the gaps between tokens), C(e2el), C(output_tokens) (from the usage when sent, else the
    chunks counted; null for a non-streamed WebUI answer), C(backend) (the first of O(backend_headers)
    present; for a WebUI JSON answer without one, its C(instance) field), C(request_id) (the
    C(X-Request-ID) response header, which nginx sets), C(session_id) and C(turn) (WebUI)."
  - Uses Python's standard library only; nothing needs to be installed on the host it runs on.
author:
  - qwen3vl.ha developers (@qwen3vl)
options:
  base_url:
    description:
      - Where the load goes, V(scheme://host[:port]), for example the VIP V(https://172.29.72.100) or a
        vLLM server V(http://127.0.0.1:8000). A path prefix is kept; C(/v1) is added by the module.
    type: str
    required: true
  webui_base_url:
    description: Base URL of the WebUI when it is not O(base_url) (for example a WebUI port on a GPU host).
    type: str
  model:
    description: The served model name (vLLM's C(--served-model-name)); required when C(api) requests are sent.
    type: str
  api_key:
    description: The vLLM API key, sent as a bearer token with C(api) requests. Never shown or stored.
    type: str
  url_username:
    description:
      - User for HTTP basic auth, sent with C(webui) requests (nginx may guard the WebUI with it), and with
        C(api) requests when O(api_key) is not set.
    type: str
  url_password:
    description: Password for O(url_username). Never shown or stored.
    type: str
  validate_certs:
    description: Verify TLS certificates and host names for C(https://) URLs (the lab's are self-signed; pass V(false) there).
    type: bool
    default: true
  ca_path:
    description: A PEM file of CA certificates, or an OpenSSL hashed directory, to verify C(https://) URLs with.
    type: path
  allow:
    description:
      - Addresses the load may go to besides loopback. Each entry is an IP address, a network in CIDR
        notation or a host name (resolved to all its addresses; a name that does not resolve is left
        out with a warning).
      - Playbooks pass the inventory's VIP and hosts.
    type: list
    elements: str
    default: []
  api_concurrency:
    description:
      - Concurrency mode, C(api) workers; each sends its next request when the previous one ended.
      - Without O(request_rate) and without either concurrency option, one C(api) worker runs.
      - Not with O(request_rate).
    type: int
  webui_concurrency:
    description: Concurrency mode, C(webui) workers (default 0). Not with O(request_rate).
    type: int
  request_rate:
    description:
      - Rate mode, requests per second in all, as a Poisson process (exponential gaps between arrivals).
    type: float
  api_weight:
    description: Rate mode, the share of C(api) requests (default V(1) when neither weight is set).
    type: float
  webui_weight:
    description: Rate mode, the share of C(webui) requests (default V(0)).
    type: float
  max_outstanding:
    description:
      - Rate mode, most requests open at once. An arrival that finds this many open is not sent and is
        counted in RV(dropped).
    type: int
    default: 64
  duration:
    description: Seconds during which requests start. Unset, they start until O(num_requests) or O(max_duration).
    type: float
  num_requests:
    description: Requests to send in all.
    type: int
  max_duration:
    description:
      - Hard limit of the whole run in seconds, always applied; at least O(duration). Requests still open
        then are cut.
      - With C(async), give the task an C(async) of more than this.
    type: float
    default: 600.0
  ramp_up:
    description: Seconds over which the workers start one after another, or the rate rises linearly from 0.
    type: float
    default: 0.0
  timeout:
    description: Seconds one request may take, the whole streamed answer included.
    type: float
    default: 60.0
  error_backoff:
    description:
      - Seconds a worker waits after a failed request before its next one (concurrency mode), so that a
        refused port does not become a busy loop of thousands of records a second.
    type: float
    default: 0.1
  seed:
    description: Seed of the arrival times and kinds in rate mode, for a repeatable load. Unset, each run differs.
    type: int
  prompt:
    description: Text sent with the image.
    type: str
    default: Describe this image in one short sentence.
  max_tokens:
    description: C(max_tokens) of the C(api) requests.
    type: int
    default: 64
  api_stream:
    description: Ask for streamed C(api) answers, which gives TTFT and inter-token latencies.
    type: bool
    default: true
  webui_stream:
    description: Ask the WebUI for a streamed answer (C(stream=true) in its request).
    type: bool
    default: false
  session_prefix:
    description:
      - WebUI session ids are C(<session_prefix>-<n>) with n from 00000; C([A-Za-z0-9_-]), at most 40
        characters. Default C(loadgen-<seconds since the epoch>), new sessions for every run.
    type: str
  session_turns:
    description: Turns per WebUI session; then a new session starts.
    type: int
    default: 5
  backend_headers:
    description: Response headers naming the backend that answered; the first one present is recorded.
    type: list
    elements: str
    default: [X-Standin-Instance]
  results_path:
    description:
      - File the full result is written to as JSON, atomically (a temporary file in the same directory,
        then renamed). Its directory must exist.
    type: path
    required: true
notes:
  - The module changes nothing on the hosts it sends to, and on the host it runs on it writes only
    O(results_path), so it always reports RV(ignore:changed=false).
  - In check mode nothing is sent and nothing is written; the options and the targets (resolved and
    checked against O(allow)) are still validated, so a refused target fails a C(--check) run too.
  - The percentiles and names of RV(aggregates) follow C(vllm bench serve) (C(mean_ttft_ms),
    C(p99_itl_ms), ...); TPOT is C((e2el - ttft) / (output_tokens - 1)) over requests with more than one
    token. Latency figures come from successful requests only; figures with no value are null.
attributes:
  check_mode:
    support: full
    description: Validates options and targets, sends nothing, writes nothing.
  diff_mode:
    support: none
    description: Nothing on any host changes.
seealso:
  - module: qwen3vl.ha.inference_probe
  - name: vllm bench serve
    description: The benchmark whose result names the aggregates follow.
    link: https://docs.vllm.ai/en/latest/cli/bench/serve.html
"""

EXAMPLES = r"""
- name: Chat load through the VIP while a fault is injected (3 API and 3 WebUI workers, 60 s)
  qwen3vl.ha.load_generator:
    base_url: "https://{{ keepalived_vip }}"
    validate_certs: false
    model: Qwen3-VL-4B-Instruct
    api_key: "{{ vault_qwen3vl_vllm_api_key }}"
    api_concurrency: 3
    webui_concurrency: 3
    duration: 60
    max_duration: 120
    timeout: 30
    session_prefix: "drill-{{ ansible_facts.date_time.epoch }}"
    allow: "{{ [keepalived_vip] + groups['all'] | map('extract', hostvars, 'ansible_host') | list }}"
    results_path: "{{ drill_dir }}/load.json"
  delegate_to: localhost
  async: 180
  poll: 0
  register: load

- name: Wait for the load to end
  ansible.builtin.async_status:
    jid: "{{ load.ansible_job_id }}"
  delegate_to: localhost
  register: load_result
  until: load_result.finished
  retries: 120
  delay: 2

- name: Show what users saw
  ansible.builtin.debug:
    msg: "{{ load_result.aggregates.completed }} ok, {{ load_result.aggregates.failed }} failed, errors {{ load_result.aggregates.errors }}"

- name: Poisson arrivals, 20 requests/s, 80 % API and 20 % WebUI, repeatable
  qwen3vl.ha.load_generator:
    base_url: http://127.0.0.1:8000
    webui_base_url: http://127.0.0.1:7860
    model: Qwen3-VL-4B-Instruct
    request_rate: 20
    api_weight: 0.8
    webui_weight: 0.2
    seed: 42
    num_requests: 1000
    ramp_up: 10
    results_path: /tmp/load.json
"""

RETURN = r"""
msg:
  description: One line on what was sent and how it went, or in check mode what would be sent.
  returned: always
  type: str
  sample: "sent 412 requests in 60.4 s (stopped by duration): 409 ok, 3 failed; results in /tmp/load.json"
results_path:
  description: Where the full result was written (the records are there, not in the task's result).
  returned: always
  type: str
  sample: /tmp/load.json
load_started:
  description:
    - Wall-clock time the load started, seconds since the epoch.
    - (Not C(started), which would tell C(async_status) that a job run with C(async) is still running.)
  returned: success and not check mode
  type: float
  sample: 1767225600.125
load_ended:
  description: Wall-clock time the last request ended, seconds since the epoch.
  returned: success and not check mode
  type: float
  sample: 1767225660.52
stopped_by:
  description: Why requests stopped starting, C(duration), C(num_requests) or C(max_duration).
  returned: success and not check mode
  type: str
  sample: duration
sent:
  description: Requests sent (each has a record in the results file).
  returned: success and not check mode
  type: int
  sample: 412
dropped:
  description: Rate mode, arrivals not sent because O(max_outstanding) requests were open.
  returned: success and not check mode
  type: int
  sample: 0
aggregates:
  description:
    - The figures over the whole run, named as C(vllm bench serve) names them. Times in milliseconds;
      null where there was no value (for example no successful request, or TTFT without streaming).
    - C(errors) counts failed requests per error class; C(per_kind) holds the same figures per request
      kind (C(api), C(webui)) over the same duration; C(start) and C(end) are the window (wall clock).
  returned: success and not check mode
  type: dict
  sample:
    start: 1767225600.125
    end: 1767225660.52
    duration: 60.395
    completed: 409
    failed: 3
    total_output_tokens: 5317
    request_throughput: 6.77
    output_throughput: 88.04
    mean_ttft_ms: 41.2
    median_ttft_ms: 38.9
    std_ttft_ms: 9.7
    p90_ttft_ms: 52.3
    p99_ttft_ms: 80.1
    mean_tpot_ms: 20.4
    mean_itl_ms: 20.4
    mean_e2el_ms: 290.5
    p99_e2el_ms: 402.7
    errors: {stream_cut: 2, refused: 1}
    per_kind:
      api: {completed: 205, failed: 2, mean_e2el_ms: 288.1}
      webui: {completed: 204, failed: 1, mean_e2el_ms: 292.9}
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.qwen3vl.ha.plugins.module_utils import loadgen as core


def summary(result, path):
    """The task's one-line message for a finished run."""
    agg = result["aggregates"]
    return "sent %d requests in %.1f s (stopped by %s): %d ok, %d failed; results in %s" % (
        result["sent"],
        result["ended"] - result["started"],
        result["stopped_by"],
        agg["completed"],
        agg["failed"],
        path,
    )


def check_mode_message(config, plan):
    """What a real run would do, for check mode."""
    if config["mode"] == "rate":
        shape = "%s requests/s (weights %s)" % (config["request_rate"], config["weights"])
    else:
        shape = "concurrency %s" % config["concurrency"]
    targets = ", ".join(
        "%s %s -> %s" % (kind, plan["targets"][kind].url, ", ".join(plan["targets"][kind].addresses))
        for kind in config["kinds"]
    )
    return "check mode: nothing sent; would send %s to %s for at most %s s" % (shape, targets, config["max_duration"])


def main():
    spec = core.argument_spec()
    spec["results_path"] = dict(type="path", required=True)
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    path = module.params["results_path"]
    try:
        config = core.build_config({name: module.params[name] for name in core.OPTIONS})
        plan = core.prepare(config)
    except core.LoadgenError as exc:
        module.fail_json(msg=to_native(exc), results_path=path)
    for warning in plan["warnings"]:
        module.warn(warning)
    if module.check_mode:
        module.exit_json(changed=False, msg=check_mode_message(config, plan), results_path=path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):  # found out before the load, not after it
        module.fail_json(msg="results_path: directory %s does not exist" % directory, results_path=path)
    result = core.run(config, plan)
    try:
        core.write_results(path, result)
    except OSError as exc:
        module.fail_json(msg="cannot write %s: %s" % (path, to_native(exc)), results_path=path)
    module.exit_json(
        changed=False,
        msg=summary(result, path),
        results_path=path,
        load_started=result["started"],
        load_ended=result["ended"],
        stopped_by=result["stopped_by"],
        sent=result["sent"],
        dropped=result["dropped"],
        aggregates=result["aggregates"],
    )


if __name__ == "__main__":
    main()
