#!/usr/bin/env bash
# Property-based API testing of the running binary against its own OpenAPI document (schemathesis,
# from PyPI): no 5xx, every status documented, every response matching its schema. Firebreak's
# validation is stricter than the schema (control characters, blank text), so the
# "schema-valid data is accepted" check is left out.
set -euo pipefail
BIN=${1:-target/debug/firebreak}
# the console script lives beside the interpreter pip installs into (no PATH or shim needed)
ST="$(python3 -c 'import os, sys; print(os.path.join(os.path.dirname(sys.executable), "st"))')"
[ -x "$ST" ] || python3 -m pip install -q "schemathesis==4.32.5"
[ -x "$ST" ] || { echo "schemathesis did not install"; exit 1; }
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
export FIREBREAK_DATA_DIR="$dir" RUST_LOG=warn FIREBREAK_SYSLOG_LISTEN=":0"
unset FIREBREAK_DATABASE_URL
"$BIN" user add stadmin --role admin --role helpdesk --role responder --role manager >/dev/null
token=$("$BIN" token create --user stadmin)
"$BIN" serve --listen 127.0.0.1:0 >"$dir/serve.out" 2>"$dir/serve.err" &
pid=$!
for _ in $(seq 1 100); do grep -q "^firebreak listening on" "$dir/serve.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^firebreak listening on //p' "$dir/serve.out")
[ -n "$url" ] || { echo "server did not start"; cat "$dir/serve.err"; exit 1; }
"$ST" run "$url/api/v1/openapi.json" -H "Authorization: Bearer $token" \
  --max-examples "${ST_MAX_EXAMPLES:-25}" --seed 1 \
  --checks all --exclude-checks positive_data_acceptance
