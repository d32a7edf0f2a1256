#!/usr/bin/env bash
# Autobahn|Testsuite, all cases, both roles: the server role with wstest's fuzzingclient
# against examples/autobahn_server, the client role with wstest's fuzzingserver (in a
# private network namespace, so it listens on loopback only) driven by
# examples/autobahn_client. With `both`, the two roles run side by side (wstest is the
# bottleneck and uses one core each). Then the strict verdict and CONFORMANCE.md.
#
# usage: scripts/autobahn.sh [server|client|both] [CASES] [default|shared]
#   CASES: comma-separated globs, default "*"; the last argument picks the permessage-deflate
#   settings of both examples (the defaults, or DeflateConfig::shared()).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
tools="$root/../shared/tools/autobahn"
mode=${1:-both}
cases=${2:-*}
deflate=${3:-default}
out="$root/target/autobahn-$deflate"
mkdir -p "$out"

command -v ip >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null; }
bash "$tools/install.sh" >/dev/null
wstest=/opt/autobahn/bin/wstest
cargo build --release --example autobahn_server --example autobahn_client

cases_json=$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1].split(",")))' "$cases")

server_role() {
  local port srv
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  ./target/release/examples/autobahn_server --port "$port" --deflate "$deflate" >"$out/server.log" 2>&1 &
  srv=$!
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$port))" 2>/dev/null && break
    sleep 0.1
  done
  cat >"$out/fuzzingclient.json" <<JSON
{"outdir": "$out/servers",
 "servers": [{"agent": "actix-meta-websocket", "url": "ws://127.0.0.1:$port"}],
 "cases": $cases_json, "exclude-cases": [], "exclude-agent-cases": {}}
JSON
  local status=0
  (cd "$out" && $wstest -m fuzzingclient -s fuzzingclient.json >"$out/wstest-server.log" 2>&1) || status=$?
  kill $srv 2>/dev/null || true
  return $status
}

client_role() {
  cat >"$out/fuzzingserver.json" <<JSON
{"url": "ws://127.0.0.1:9001", "outdir": "$out/clients",
 "cases": $cases_json, "exclude-cases": [], "exclude-agent-cases": {}}
JSON
  unshare -n sh -c "
    ip link set lo up
    cd '$out'
    $wstest -m fuzzingserver -s fuzzingserver.json -u 0 >'$out/wstest-client.log' 2>&1 &
    ws=\$!
    for i in \$(seq 100); do python3 -c \"import socket; socket.create_connection(('127.0.0.1',9001))\" 2>/dev/null && break; sleep 0.1; done
    '$root/target/release/examples/autobahn_client' --url ws://127.0.0.1:9001 --agent actix-meta-websocket --deflate '$deflate' >'$out/client.log' 2>&1
    status=\$?
    kill \$ws
    exit \$status
  "
}

case "$mode" in
  server) server_role ;;
  client) client_role ;;
  both)
    server_role &
    s=$!
    client_role
    wait $s
    ;;
  *) echo "usage: $0 [server|client|both] [CASES]" >&2; exit 2 ;;
esac

python3 "$root/conformance/report.py" "$out" "$mode" "$deflate"
