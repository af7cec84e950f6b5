#!/usr/bin/env bash
# Benchmark of the HTTP surface against the release binary over loopback:
#   1. requests/s and latency percentiles of `GET /api/v1/auth/me` with a valid token (wrk);
#   2. login latency with the production scrypt parameters (ln=15, r=8, p=1), which is slow on
#      purpose, measured one login at a time.
# Usage: host/server/benches/http_auth_me.sh [duration_secs=10] [connections=32] [logins=20]
# Needs: wrk (apt-get install wrk), curl, python3. Builds `toolgate` in release mode;
# PROFILE=debug uses target/debug/toolgate instead (dependencies are optimised in dev builds).
set -euo pipefail
DURATION=${1:-10}
CONNECTIONS=${2:-32}
LOGINS=${3:-20}
source "$(dirname "$0")/server.sh"
# Production scrypt cost; limits raised so the load generator measures the server, not the rate
# limiter (which would answer 429 after 600 requests per minute).
start_server \
  TOOLGATE_HTTP_RATE_LIMITS_GENERAL_REQUESTS=1000000000 TOOLGATE_HTTP_RATE_LIMITS_GENERAL_PERIOD_SECS=1 \
  TOOLGATE_HTTP_RATE_LIMITS_LOGIN_REQUESTS=1000000 TOOLGATE_HTTP_RATE_LIMITS_LOGIN_PERIOD_SECS=1
LOGIN_BODY="{\"username\":\"admin\",\"password\":\"$PASSWORD\"}"

TOKEN=$(login_token)

echo "== GET /api/v1/auth/me, ${DURATION}s, ${CONNECTIONS} connections, 2 threads, $(nproc) cores"
wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "Authorization: Bearer $TOKEN" "$URL/api/v1/auth/me"

echo "== POST /api/v1/auth/login (scrypt ln=15, r=8, p=1), $LOGINS sequential logins"
for _ in $(seq "$LOGINS"); do
  curl -s -o /dev/null -w '%{time_total}\n' "$URL/api/v1/auth/login" -H 'content-type: application/json' -d "$LOGIN_BODY"
done | sort -n | python3 -c '
import sys
t = [float(x) * 1000 for x in sys.stdin if x.strip()]
print(f"login latency ms: median {t[len(t)//2]:.1f}  min {t[0]:.1f}  max {t[-1]:.1f}  (n={len(t)})")'
