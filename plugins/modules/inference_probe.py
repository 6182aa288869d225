#!/usr/bin/python
# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: inference_probe
short_description: Prove that a vLLM OpenAI-compatible server (and its WebUI) really answers
version_added: 0.2.0
description:
  - Probes a vLLM server the way a client uses it, from the host the task runs on, in three steps,
    stopping at the first that fails.
  - "C(models): C(GET {url}/v1/models) must list O(model). With O(wait_timeout) the request is
    repeated every O(interval) seconds while the answer means the server is not up yet: connection
    refused or reset, a timeout, HTTP 5xx, 408 or 429, or O(model) not listed yet. vLLM opens its
    port only after the weights are loaded, which can take minutes. Answers that waiting cannot fix
    fail at once: 401 or 403 (the key), another 4xx (the URL), a body that is not an OpenAI model
    list, an untrusted TLS certificate."
  - "C(chat): C(POST {url}/v1/chat/completions) with O(prompt) and one image (a generated 64x64
    PNG of four coloured quarters, or O(image_path)) as a base64 C(data:) URL, C(temperature=0) and O(max_tokens). It passes
    on HTTP 200 with a non-empty answer and a C(finish_reason) of C(stop), C(length),
    C(tool_calls), C(function_call) or C(content_filter). With O(stream=true) the server-sent events
    are read as they arrive and the time to the first token is measured. Tried once. O(chat=false)
    skips it."
  - "C(webui): with O(webui_url), C(GET {webui_url}{webui_health_path}) must answer 2xx, with the
    same waiting rules as C(models) (a 4xx other than 408 or 429 fails at once). Neither the key nor O(headers) are sent
    to it."
  - O(wait_timeout) is one deadline for the whole probe, counted from its start; every step gets at
    least one attempt even after it has passed.
  - "Failure messages say what was wrong, for example
    C(connection refused at http://127.0.0.1:8000 after 300 s (31 attempts)),
    C(401 Unauthorized from http://127.0.0.1:8000/v1/models: api_key wrong or missing),
    C(model 'x' not served; served: ['y']) or C(chat completion returned HTTP 400) followed by
    the server's own message."
  - "The key is sent only as C(Authorization: Bearer) to O(url), and is replaced by C(********) in
    every message and return value, even where a server echoes it back."
  - Uses Python's C(urllib) only; nothing needs to be installed on the target.
author:
  - qwen3vl.ha developers (@qwen3vl)
options:
  url:
    description:
      - Base URL of the vLLM server, without C(/v1), for example V(http://127.0.0.1:8000).
      - C(http://) or C(https://); no credentials, query or fragment in it.
    type: str
    required: true
  model:
    description: The served model name (vLLM's C(--served-model-name)) that must be listed and is asked.
    type: str
    required: true
  api_key:
    description:
      - "The server's API key (vLLM's C(--api-key)), sent as C(Authorization: Bearer)."
      - Leave unset for a server started without a key.
    type: str
  headers:
    description:
      - Extra HTTP headers for the requests to O(url) (not to O(webui_url)).
      - They appear in the task's invocation arguments; put the key in O(api_key), which is hidden.
    type: dict
    default: {}
  prompt:
    description: Text sent with the image.
    type: str
    default: Describe this image in one short sentence.
  image_path:
    description:
      - A PNG or JPEG file on the target to send instead of the generated 64x64 PNG (at most 10 MiB).
      - A file that is missing, unreadable, empty or not PNG/JPEG fails the task before any request.
    type: path
  max_tokens:
    description: Most tokens the model may generate for the answer.
    type: int
    default: 16
  stream:
    description:
      - "Ask for a streamed answer (server-sent events, C(stream_options.include_usage)) and measure
        RV(ttft_s). It fails when the stream ends without C(data: [DONE])."
    type: bool
    default: false
  chat:
    description: Run the chat completion step. With V(false) only the model list (and the WebUI) are checked.
    type: bool
    default: true
  expect_in_answer:
    description:
      - Text the answer must contain (compared without regard to case), for a model known to
        answer a fixed prompt in a known way.
    type: str
  webui_url:
    description:
      - Base URL of the WebUI in front of the server, for example V(http://127.0.0.1:7860).
      - Unset, the WebUI is not checked.
    type: str
  webui_health_path:
    description: Path of the WebUI's health endpoint, appended to O(webui_url).
    type: str
    default: /
  wait_timeout:
    description:
      - Seconds the probe may wait for the server (and the WebUI) to come up, counted from the
        start of the task. V(0) tries each step once.
    type: int
    default: 0
  interval:
    description: Seconds between two attempts while waiting; more than V(0).
    type: float
    default: 2.0
  timeout:
    description:
      - Seconds one request may take; for the chat step the whole answer (also when streamed)
        must arrive within it.
      - While waiting, a request never runs (much) past the end of O(wait_timeout).
    type: float
    default: 60.0
  validate_certs:
    description: Verify the TLS certificate and host name of C(https://) URLs.
    type: bool
    default: true
  ca_path:
    description: A PEM file of CA certificates (or an OpenSSL hashed directory) to verify C(https://) URLs with, instead of the system's.
    type: path
  use_proxy:
    description:
      - Use the proxy named by the C(http_proxy)/C(https_proxy) environment variables of the
        target (C(no_proxy) is honoured), as M(ansible.builtin.uri) does.
      - Set V(false) to always connect directly.
    type: bool
    default: true
notes:
  - The probe changes nothing and reports RV(ignore:changed=false). It runs in check mode too, as a
    monitor would, so a C(--check) run still tells whether the service answers.
  - Each probe sends one small chat completion, which shows in vLLM's request metrics.
  - For a thinking model whose reasoning parser puts the text in C(reasoning_content), that text
    counts as the answer when C(content) is empty (RV(answer_from) says which); raise O(max_tokens)
    to see C(content) too.
attributes:
  check_mode:
    support: full
    description: The probe only reads, so it runs in full in check mode, sending the same requests.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to show as a diff.
seealso:
  - name: vLLM OpenAI-compatible server
    description: The endpoints probed (C(/v1/models), C(/v1/chat/completions)) and the C(--api-key) option.
    link: https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html
  - module: ansible.builtin.uri
"""

EXAMPLES = r"""
- name: Readiness gate after (re)starting an instance (waits while vLLM loads the weights)
  qwen3vl.ha.inference_probe:
    url: http://127.0.0.1:8000
    model: Qwen3-VL-4B-Instruct
    api_key: "{{ vllm_api_key }}"
    wait_timeout: 600
    webui_url: http://127.0.0.1:7860
    webui_health_path: /healthz

- name: Streamed answer through the load balancer, with time to first token
  qwen3vl.ha.inference_probe:
    url: https://qwen.example.com
    model: Qwen3-VL-4B-Instruct
    api_key: "{{ vllm_api_key }}"
    stream: true
    max_tokens: 32
    ca_path: /etc/ssl/certs/internal-ca.pem
  register: probe

- name: Show the latency
  ansible.builtin.debug:
    msg: "first token after {{ probe.ttft_s }} s, answer after {{ probe.latency_s }} s"

- name: Ask about a known picture and check the answer
  qwen3vl.ha.inference_probe:
    url: http://127.0.0.1:8000
    model: Qwen3-VL-4B-Instruct
    image_path: /srv/probe/red-square.png
    prompt: What colour is this square? Answer with one word.
    expect_in_answer: red

- name: Monitoring - only list the models, report instead of failing
  qwen3vl.ha.inference_probe:
    url: http://gpu1.example.com:8000
    model: Qwen3-VL-4B-Instruct
    chat: false
    timeout: 5
  register: up
  failed_when: false
"""

RETURN = r"""
ok:
  description: True when every step passed.
  returned: always
  type: bool
  sample: true
msg:
  description: What passed, or what failed and why.
  returned: always
  type: str
  sample: "model 'Qwen3-VL-4B-Instruct' served at http://127.0.0.1:8000 (1 attempt); chat answered in 0.41 s (finish_reason stop)"
models:
  description: The model names the server listed (empty when it never answered).
  returned: always
  type: list
  elements: str
  sample: [Qwen3-VL-4B-Instruct]
attempts:
  description: Requests made by the C(models) step.
  returned: always
  type: int
  sample: 31
steps:
  description:
    - One entry per step run, in order C(models), C(chat), C(webui).
    - C(status) is the last HTTP status (null when there was none), C(latency_s) the duration of
      the last request, C(error) null or why the step failed.
  returned: always
  type: list
  elements: dict
  sample:
    - name: models
      url: http://127.0.0.1:8000/v1/models
      ok: true
      status: 200
      latency_s: 0.004
      attempts: 3
      error: null
    - name: chat
      url: http://127.0.0.1:8000/v1/chat/completions
      ok: true
      status: 200
      latency_s: 0.412
      attempts: 1
      error: null
answer:
  description: The model's answer, cut to 500 characters; null without the chat step.
  returned: always
  type: str
  sample: A small square with a red and green gradient over a blue half.
answer_from:
  description: The message field the answer came from, C(content), C(reasoning_content) or C(reasoning); null without the chat step.
  returned: always
  type: str
  sample: content
finish_reason:
  description: Why the model stopped (C(stop), C(length), ...); null without the chat step.
  returned: always
  type: str
  sample: length
usage:
  description: Token counts the server reported (C(prompt_tokens), C(completion_tokens), C(total_tokens)); null when it sent none.
  returned: always
  type: dict
  sample: {prompt_tokens: 95, completion_tokens: 16, total_tokens: 111}
latency_s:
  description: Seconds from sending the chat request to the end of its answer; null without the chat step.
  returned: always
  type: float
  sample: 0.412
ttft_s:
  description: Seconds from sending the chat request to the first non-empty token; null unless O(stream=true).
  returned: always
  type: float
  sample: 0.087
elapsed_s:
  description: Seconds the whole probe took, waiting included.
  returned: always
  type: float
  sample: 62.3
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.qwen3vl.ha.plugins.module_utils import inference_probe as core


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type="str", required=True),
            model=dict(type="str", required=True),
            api_key=dict(type="str", no_log=True),
            headers=dict(type="dict", default={}),
            prompt=dict(type="str", default=core.DEFAULT_PROMPT),
            image_path=dict(type="path"),
            max_tokens=dict(type="int", default=16, no_log=False),
            stream=dict(type="bool", default=False),
            chat=dict(type="bool", default=True),
            expect_in_answer=dict(type="str"),
            webui_url=dict(type="str"),
            webui_health_path=dict(type="str", default="/"),
            wait_timeout=dict(type="int", default=0),
            interval=dict(type="float", default=2.0),
            timeout=dict(type="float", default=60.0),
            validate_certs=dict(type="bool", default=True),
            ca_path=dict(type="path"),
            use_proxy=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    params = module.params
    headers = {str(name): to_native(value) for name, value in params["headers"].items()}
    errors = core.check_options(
        url=params["url"],
        headers=headers,
        webui_url=params["webui_url"],
        webui_health_path=params["webui_health_path"],
        interval=params["interval"],
        wait_timeout=params["wait_timeout"],
        timeout=params["timeout"],
        max_tokens=params["max_tokens"],
    )
    if errors:
        module.fail_json(msg="invalid options: " + "; ".join(errors), errors=errors)
    if params["api_key"] and any(name.lower() == "authorization" for name in headers):
        module.fail_json(msg="headers: give the key either as api_key or as an Authorization header, not both")

    try:
        result = core.probe(
            url=params["url"],
            model=params["model"],
            api_key=params["api_key"],
            headers=headers,
            prompt=params["prompt"],
            image_path=params["image_path"],
            max_tokens=params["max_tokens"],
            stream=params["stream"],
            chat=params["chat"],
            expect_in_answer=params["expect_in_answer"],
            webui_url=params["webui_url"],
            webui_health_path=params["webui_health_path"],
            wait_timeout=params["wait_timeout"],
            interval=params["interval"],
            timeout=params["timeout"],
            validate_certs=params["validate_certs"],
            ca_path=params["ca_path"],
            use_proxy=params["use_proxy"],
        )
    except core.ProbeError as exc:
        module.fail_json(msg=to_native(exc))
    if not result["ok"]:
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
