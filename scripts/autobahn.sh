#!/usr/bin/env bash
# Autobahn|Testsuite, all cases, both roles: the server role with wstest's fuzzingclient
# against examples/autobahn_server (on actix-web's HttpServer, and with `owned` on
# WsServer), the client role with wstest's fuzzingserver (in a private network namespace,
# so it listens on loopback only) driven by examples/autobahn_client. The roles asked for
# run side by side (wstest is the bottleneck and uses one core each). Then the strict
# verdict and CONFORMANCE.md.
#
# usage: scripts/autobahn.sh [ROLES] [CASES] [default|shared]
#   ROLES: server, owned, client, or several joined by commas; `both` is server,client and
#   `all` is server,owned,client. CASES: comma-separated globs, default "*"; the last
#   argument picks the permessage-deflate settings of both examples (the defaults, or
#   DeflateConfig::shared()).
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

# server_role DIR AGENT [--owned]: the fuzzing client against autobahn_server; reports in $out/DIR.
server_role() {
  local dir=$1 agent=$2 port srv
  shift 2
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  ./target/release/examples/autobahn_server --port "$port" --deflate "$deflate" "$@" >"$out/$dir.log" 2>&1 &
  srv=$!
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$port))" 2>/dev/null && break
    sleep 0.1
  done
  cat >"$out/fuzzingclient-$dir.json" <<JSON
{"outdir": "$out/$dir",
 "servers": [{"agent": "$agent", "url": "ws://127.0.0.1:$port"}],
 "cases": $cases_json, "exclude-cases": [], "exclude-agent-cases": {}}
JSON
  local status=0
  (cd "$out" && $wstest -m fuzzingclient -s "fuzzingclient-$dir.json" >"$out/wstest-$dir.log" 2>&1) || status=$?
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
  both) roles=(server client) ;;
  all) roles=(server owned client) ;;
  *) IFS=, read -r -a roles <<<"$mode" ;;
esac
pids=()
for role in "${roles[@]}"; do
  case "$role" in
    server) server_role servers "actix-meta-websocket" & ;;
    owned) server_role owned "actix-meta-websocket on WsServer" --owned & ;;
    client) client_role & ;;
    *) echo "usage: $0 [server|owned|client|both|all, or roles joined by commas] [CASES] [default|shared]" >&2; exit 2 ;;
  esac
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
[ $status -eq 0 ] || echo "a wstest run exited with $status (the verdict below says which cases)" >&2

python3 "$root/conformance/report.py" "$out" "$(IFS=,; echo "${roles[*]}")" "$deflate"
exit $status
