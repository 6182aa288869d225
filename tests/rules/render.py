# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""python tests/rules/render.py OUTDIR

Renders the prometheus role's alert rules (roles/prometheus/templates/qwen3vl.rules.yml.j2) with the role's
default thresholds into OUTDIR/qwen3vl.rules.yml and copies the promtool unit tests
(tests/rules/qwen3vl.rules.test.yml) beside it, so that `promtool test rules qwen3vl.rules.test.yml` can run
in OUTDIR. The template's variables are written [[ name ]], as the role renders it.
"""

import shutil
import sys
from pathlib import Path

import jinja2
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TEMPLATE = ROOT / "roles" / "prometheus" / "templates" / "qwen3vl.rules.yml.j2"
ROLE_DEFAULTS = ROOT / "roles" / "prometheus" / "defaults" / "main.yml"
TEST_FILE = HERE / "qwen3vl.rules.test.yml"
RULES_NAME = "qwen3vl.rules.yml"

# The values the promtool tests are written for (the role's defaults); used where the role's defaults file
# does not have them.
FALLBACK = {
    "prometheus_alert_down_for": "1m",
    "prometheus_alert_gpu_memory_ratio": 0.9,
    "prometheus_alert_latency_p95_seconds": 5,
    "prometheus_alert_http_5xx_ratio": 0.01,
    "prometheus_alert_cpu_ratio": 0.8,
    "prometheus_alert_queue_waiting": 10,
    "prometheus_alert_kv_cache_ratio": 0.95,
    "prometheus_alert_disk_free_ratio": 0.10,
}


def defaults():
    """The template's variables: the role's defaults where it has them, else FALLBACK."""
    values = dict(FALLBACK)
    if ROLE_DEFAULTS.is_file():
        data = yaml.safe_load(ROLE_DEFAULTS.read_text()) or {}
        if isinstance(data, dict):
            values.update({key: data[key] for key in FALLBACK if key in data})
    return values


def render_text(values=None):
    """The rendered rules file as text (``values``: the template's variables, default ``defaults()``)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE.parent)),
        variable_start_string="[[",
        variable_end_string="]]",
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    return env.get_template(TEMPLATE.name).render(**(defaults() if values is None else values))


def render(outdir, values=None):
    """Write OUTDIR/qwen3vl.rules.yml and copy the test file beside it; returns the rules file's path."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    rules = out / RULES_NAME
    rules.write_text(render_text(values))
    shutil.copyfile(TEST_FILE, out / TEST_FILE.name)
    return rules


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    print(render(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
