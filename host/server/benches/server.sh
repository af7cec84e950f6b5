# Sourced by the HTTP benchmarks. `start_server [VAR=value ...]` builds `toolgate` (release, or
# target/debug with PROFILE=debug; or takes the binary at $TOOLGATE_BIN, to compare builds),
# starts it in production mode on a fresh data directory (and an audit key beside it) over loopback
# with the extra environment given, removes both on exit, and sets URL and PASSWORD (the initial
# admin's, read from the file whose path it prints). `login_token`
# prints a token for that admin.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
PROFILE=${PROFILE:-release}

start_server() {
  local bin=${TOOLGATE_BIN:-$TARGET/$PROFILE/toolgate} flag=
  [ "$PROFILE" = release ] && flag=--release
  [ -n "${TOOLGATE_BIN:-}" ] || cargo build $flag -q -p toolgate-server --bin toolgate --manifest-path "$ROOT/Cargo.toml"
  # The audit key lives outside the data directory, as production mode requires.
  SCRATCH=$(mktemp -d)
  DATA=$SCRATCH/data
  mkdir -m 700 "$DATA"
  (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$SCRATCH/audit.key")
  trap '[ -n "${PID:-}" ] && kill "$PID" 2>/dev/null; rm -rf "$SCRATCH"' EXIT
  env -i PATH="$PATH" \
    TOOLGATE_MODE=production \
    TOOLGATE_JWT_SECRET="bench-secret-$(head -c 48 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
    TOOLGATE_AUDIT_KEY_FILE="$SCRATCH/audit.key" \
    TOOLGATE_DATA_DIR="$DATA" TOOLGATE_SANDBOX_WORKSPACE="$DATA/workspace" \
    TOOLGATE_LISTEN=127.0.0.1:0 TOOLGATE_LOG=warn \
    "$@" "$bin" serve >"$DATA/stdout" 2>"$DATA/stderr" &
  PID=$!
  for _ in $(seq 200); do grep -q "listening on" "$DATA/stdout" 2>/dev/null && break; sleep 0.1; done
  URL=$(sed -n 's/^toolgate listening on //p' "$DATA/stdout")
  PASSWORD=$(cat "$(sed -n 's/^  password file: //p' "$DATA/stdout")")
}

login_token() {
  curl -sf "$URL/api/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"username\":\"admin\",\"password\":\"$PASSWORD\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}
