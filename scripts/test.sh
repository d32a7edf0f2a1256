#!/usr/bin/env bash
# The README's test command. On a fresh machine it first installs what the tests use as
# real peers (tinyproxy and redis-server from Debian, Python `websockets` from PyPI, Node
# `ws` from npm), and Chromium, then runs every test: unit, property, integration over
# loopback (the cluster's against redis-servers of their own, on one server, on Sentinel
# and on Redis Cluster; the server-side ones on both servers), the doc examples, and
# headless Chromium against the chat examples.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v tinyproxy >/dev/null 2>&1 || need_apt+=(tinyproxy)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if ! command -v prometheus >/dev/null 2>&1; then
  echo "== installing prometheus"
  apt-get update -qq
  # The server alone (its recommends are exporters and a web console the test does not use).
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
if ! python3 -c 'import websockets' 2>/dev/null; then
  echo "== installing python websockets"
  python3 -m pip install -q --root-user-action=ignore 'websockets>=13'
fi

if [ ! -d tests/peers/node_modules/ws ] || [ ! -d tests/peers/node_modules/playwright-core ]; then
  echo "== installing node ws and playwright-core"
  (cd tests/peers && npm install --silent --no-audit --no-fund --no-package-lock)
fi

# Every outside peer is installed above: a missing one fails its tests instead of
# skipping them.
export AMW_REQUIRE_PEERS=1
# Tests run these examples as processes of their own: cluster_chat as a cluster node,
# echo_server over wss, chat scraped by Prometheus (cargo test builds examples without
# putting them where a test can find them).
cargo build --all-features --example cluster_chat --example echo_server --example chat
# Every suite that starts a server runs its tests on both servers: actix-web's
# `HttpServer`, then `WsServer` in a child of its test binary (tests/common/served.rs).
# Each such suite leaves its name in $served, and `<name>.owned` once its tests passed on
# `WsServer`: checked below, so a broken mark cannot shrink the run silently.
served=$(mktemp -d)
trap 'rm -rf "$served"' EXIT
unset AMW_SERVER
AMW_SERVED="$served" cargo test --all-features --all-targets
suites=0
for mark in "$served"/*; do
  case "$mark" in *.owned) continue ;; esac
  suites=$((suites + 1))
  if [ ! -e "$mark.owned" ]; then
    echo "suite $(basename "$mark") started a server but did not run on WsServer" >&2
    exit 1
  fi
done
if [ "$suites" -lt 20 ]; then
  echo "only $suites suites started a server; the tests' common helpers must mark them" >&2
  exit 1
fi
echo "== $suites suites ran on both servers"
# The cluster suites again on Redis Sentinel (a primary, a replica, three sentinels;
# tests/common/redis.rs) instead of one redis-server: the same tests, the other topology.
AMW_SERVER=http AMW_REDIS=sentinel cargo test --all-features \
  --test cluster --test cluster_presence --test cluster_history --test cluster_faults --test isolation
# And on Redis Cluster (three primaries, three replicas): each group on its shard.
AMW_SERVER=http AMW_REDIS=cluster cargo test --all-features \
  --test cluster --test cluster_presence --test cluster_history --test cluster_faults --test isolation
cargo test --all-features --doc
# RELIABILITY.md from what the hostile and soak tests measured.
python3 scripts/reliability.py
# The browser tests drive the chat examples (one node, also over https and wss with a
# self-signed certificate; two nodes on Redis; the live status page).
cargo build --all-features --example chat --example cluster_chat --example self_signed_cert
node --test tests/browser/
