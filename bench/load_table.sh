#!/usr/bin/env bash
# The articles' load table (001 §5), on the lab: requests per second and P95 latency through the VIP with
# 1, 2 and 4 model instances, measured side by side in one run, written into README.md.
#
#   bench/load_table.sh [SECONDS] [CONCURRENCY]     (default 30 s per row, 32 API workers; about 10 minutes)
#
# Brings the lab up with 4 GPU hosts (inventories/lab + tests/lab/more-gpus.yml), then for 4, 2 and 1
# instances drains the others on both load balancers (playbooks/drain.yml) and runs tools/loadgen through
# the VIP: a fixed number of workers sending streamed image chats back to back. The stand-in vLLM serves
# at most --max-num-seqs 8 requests at once (its default; more wait in its queue) and writes a token
# every 20 ms (the lab's STANDIN_TOKEN_DELAY), so one instance saturates near 8 / (tokens x 0.02 s) req/s:
# the table shows how capacity grows with instances, not what a GPU does. The load generator and every
# instance share this machine's cores, which caps the 4-instance row. Removes the lab at the end.
set -euo pipefail
# shellcheck source=tools/lib.sh
. "${BASH_SOURCE[0]%/*}/../tools/lib.sh"
cd "$(dirname "$0")/.."
SECONDS_PER_ROW="${1:-30}"
CONCURRENCY="${2:-32}"
OUT="${QWEN3VL_BENCH_DIR:-.cache/bench}"
INV="inventories/lab tests/lab/more-gpus.yml"
VIP=172.29.72.100
KEY=lab-only-key-not-a-secret
mkdir -p "$OUT"

QWEN3VL_LAB_INVENTORY="$INV" tools/lab.sh down >"$OUT/load-table-lab.log" 2>&1
QWEN3VL_LAB_INVENTORY="$INV" tools/lab.sh up >>"$OUT/load-table-lab.log" 2>&1 || die "lab up failed: see $OUT/load-table-lab.log"
trap 'QWEN3VL_LAB_INVENTORY="$INV" tools/lab.sh down >>"$OUT/load-table-lab.log" 2>&1' EXIT

drain() { # state instance...
  local state="$1"; shift
  local list; list="$(printf '"%s",' "$@")"
  .venv/bin/ansible-playbook -i inventories/lab -i tests/lab/more-gpus.yml "playbooks/$state.yml" \
    -e "{\"instance\": [${list%,}]}" >>"$OUT/load-table-lab.log" 2>&1 || die "$state.yml $* failed: see $OUT/load-table-lab.log"
}

rows=()
for n in 4 2 1; do
  case "$n" in
    2) drain drain gpu3@0 gpu4@0 ;;
    1) drain drain gpu2@0 ;;
  esac
  tools/loadgen --base-url "https://$VIP" --no-validate-certs --inventory inventories/lab --inventory tests/lab/more-gpus.yml \
    --model Qwen3-VL-4B-Instruct --api-key "$KEY" --api-concurrency "$CONCURRENCY" --duration "$SECONDS_PER_ROW" \
    --output "$OUT/load-table-$n.json" >"$OUT/load-table-$n.txt" 2>&1 || die "loadgen failed: see $OUT/load-table-$n.txt"
  rows+=("$(.venv/bin/python - "$OUT/load-table-$n.json" "$n" <<'PY'
import json, sys
agg = json.load(open(sys.argv[1]))["aggregates"]
print("| %s | %d | %d | %.1f | %.0f | %.0f | %.0f |" % (
    sys.argv[2], agg["completed"], agg["failed"], agg["request_throughput"], agg["median_e2el_ms"],
    agg["p95_e2el_ms"], agg["median_ttft_ms"]))
PY
)")
  log "$n instance(s): ${rows[-1]}"
done
drain undrain gpu2@0 gpu3@0 gpu4@0

table="$(printf '%s\n' \
  "| instances | completed | failed | request_throughput (req/s) | median_e2el_ms | p95_e2el_ms | median_ttft_ms |" \
  "| --- | --- | --- | --- | --- | --- | --- |" "${rows[@]}")"
printf '%s\n' "$table"
.venv/bin/python - README.md "$table" "$SECONDS_PER_ROW" "$CONCURRENCY" <<'PY'
import re, sys, datetime
path, table, seconds, workers = sys.argv[1:]
text = open(path).read()
block = ("<!-- load-table:start -->\n`bench/load_table.sh %s %s` on %s: %s API workers through the VIP, %s s per row.\n\n%s\n"
         "<!-- load-table:end -->") % (seconds, workers, datetime.date.today(), workers, seconds, table)
new, count = re.subn(r"<!-- load-table:start -->.*?<!-- load-table:end -->", lambda m: block, text, flags=re.S)
if count != 1:
    sys.exit("README.md has no load-table markers")
open(path, "w").write(new)
PY
log "README.md updated"
