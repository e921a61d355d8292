#!/usr/bin/env bash
# `make run`: a local three-node cluster on 127.0.0.1, data under ./data.
# The first run initializes the cluster; later runs resume it with its data,
# with the nodes added and without the nodes removed since (deploy/local/node.sh).
# Ctrl-C stops every node; `make node-stop N=2` and friends act on one.
set -euo pipefail
cd "$(dirname "$0")/../.."

target="${CARGO_TARGET_DIR:-target}"
bin="${VERITRAILD_BIN:-$target/debug/veritraild}"
[ -x "$bin" ] || { echo "run.sh: $bin is missing; run 'make run' (it builds it)" >&2; exit 2; }
node=deploy/local/node.sh

stop() {
  trap - INT TERM EXIT
  echo
  echo "stopping the cluster..."
  for n in $("$node" known); do "$node" stop "$n" >/dev/null & done
  wait
  echo "stopped; data kept in ./data (delete it to start a fresh cluster)"
}
trap stop INT TERM EXIT

mkdir -p data
nodes=($("$node" known))
for n in "${nodes[@]}"; do "$node" start "$n" >/dev/null; done
first="127.0.0.1:700${nodes[0]}"

running() {
  local n
  for n in $("$node" known); do [ -f "data/node$n.pid" ] && kill -0 "$(cat "data/node$n.pid")" 2>/dev/null && return 0; done
  return 1
}

# Wait (at most 60 s) until the first node sees a leader and three voters.
for _ in $(seq 1 120); do
  for n in "${nodes[@]}"; do
    [ -f "data/node$n.pid" ] && kill -0 "$(cat "data/node$n.pid")" 2>/dev/null \
      || { echo "node $n exited; see data/node$n.log" >&2; tail -n 20 "data/node$n.log" >&2; exit 1; }
  done
  if "$bin" status --addr "$first" --require-voters 3 >/dev/null 2>&1; then break; fi
  sleep 0.5
done
"$bin" status --addr "$first" --require-voters 3 || { echo "the cluster did not form; see data/node*.log" >&2; exit 1; }

cat <<MSG

Veritrail is running: three nodes, any of them takes appends.
This is a DEVELOPMENT cluster: no TLS, no authentication (tls.insecure_dev).
docs/SECURITY.md sets up TLS, client identities and a policy.
  gRPC      127.0.0.1:7001  127.0.0.1:7002  127.0.0.1:7003
  metrics   http://127.0.0.1:9101/metrics  (9102, 9103)
  logs      data/node1.log  data/node2.log  data/node3.log

Try it, in another terminal (the README's tour goes on from here):
  export PATH=$(cd "$(dirname "$bin")" && pwd):\$PATH
  veritrail append --source billing --actor alice --action invoice.refund --resource invoice/42 --outcome success
  veritrail cluster status
  veritrail verify

One node at a time, from another terminal (deploy/local/node.sh):
  make node-stop N=2      make node-start N=2      make node-list
  make node-add N=4       make node-remove N=2     (a replacement: add, then remove)

Ctrl-C stops the cluster.
MSG
# Until Ctrl-C, or until every node has stopped.
while running; do sleep 1; done
echo "every node has stopped"
