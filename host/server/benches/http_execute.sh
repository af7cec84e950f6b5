#!/usr/bin/env bash
# End-to-end benchmark of the execute pipeline against the release binary over loopback:
# `POST /api/v1/tools/get_audit_log/execute` with `{"last_n": 20}` (a READ tool that needs no
# sandbox), 32 keep-alive connections (wrk, 2 threads), every call authenticated (JWT), decided
# by policy, run as a WebAssembly plugin that reads the audit log, and answered only after its
# own audit entries are durably committed (group commit, fsync).
# Usage: host/server/benches/http_execute.sh [duration_secs=10] [connections=32] [tool=get_audit_log] [params_json]
# Needs: wrk (apt-get install wrk), curl, python3, the built-in plugins (`cargo xtask plugins`).
set -euo pipefail
DURATION=${1:-10}
CONNECTIONS=${2:-32}
TOOL=${3:-get_audit_log}
PARAMS=${4:-'{"last_n": 20}'}
source "$(dirname "$0")/server.sh"
# The rate limits are raised so that wrk measures the pipeline, not the limiter (the default
# allows 10 executions per minute and client).
start_server TOOLGATE_LOG=error \
  TOOLGATE_PLUGINS_DIR="$TARGET/plugins" TOOLGATE_POLICY_DIR="$ROOT/policies" \
  TOOLGATE_SANDBOX_POOL_SIZE=0 \
  TOOLGATE_HTTP_RATE_LIMITS_GENERAL_REQUESTS=1000000000 TOOLGATE_HTTP_RATE_LIMITS_EXEC_REQUESTS=1000000000
TOKEN=$(login_token)
BODY="{\"params\": $PARAMS}"
ENDPOINT="$URL/api/v1/tools/$TOOL/execute"

# The call must complete, or the figures mean nothing; then fill the log past `last_n` entries.
STATUS=$(curl -sf "$ENDPOINT" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d "$BODY" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
[ "$STATUS" = completed ] || { echo "the call does not complete: $STATUS" >&2; exit 1; }
for _ in $(seq 20); do
  curl -sf -o /dev/null "$ENDPOINT" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d "$BODY"
done

SCRIPT=$DATA/post.lua
cat >"$SCRIPT" <<LUA
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $TOKEN"
function done(summary, latency, requests)
  local tail = {}
  for _, p in ipairs({50, 90, 99, 99.9}) do
    tail[#tail + 1] = string.format("p%s %.2f ms", p, latency:percentile(p) / 1000)
  end
  io.write(string.format("== latency: %s, max %.2f ms\n", table.concat(tail, ", "), latency.max / 1000))
end
LUA
THREADS=$((CONNECTIONS < 2 ? CONNECTIONS : 2))
echo "== POST /api/v1/tools/$TOOL/execute $BODY, ${DURATION}s, ${CONNECTIONS} connections, $THREADS threads, $(nproc) cores"
# The server's CPU time per call is steadier than throughput on a shared machine: the Linux
# clock ticks (utime + stime, fields 14 and 15 of /proc/PID/stat) spent during the run.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
BEFORE=$(cpu_ticks)
wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" -s "$SCRIPT" "$ENDPOINT" | tee "$DATA/wrk.out"
CALLS=$(sed -n 's/^ *\([0-9]*\) requests in .*/\1/p' "$DATA/wrk.out")
echo "== server peak resident memory: $(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$PID/status") MiB"
echo "== server CPU: $(( ($(cpu_ticks) - BEFORE) * 1000000 / $(getconf CLK_TCK) / CALLS )) µs per call"
echo "== audit entries written: $(curl -sf "$URL/api/v1/audit?last_n=1" -H "authorization: Bearer $TOKEN" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["entries"][0]["seq"])')"
DB=$DATA/toolgate.redb
echo "== database file: $(( $(stat -c %s "$DB") >> 20 )) MiB long, $(( $(stat -c '%b * %B' "$DB") >> 20 )) MiB allocated"
