#!/usr/bin/env bash
# `make run`: a local three-node cluster on 127.0.0.1, data under ./data.
# The first run initializes the cluster; later runs resume it with its data.
# Ctrl-C stops all three nodes.
set -euo pipefail
cd "$(dirname "$0")/../.."

target="${CARGO_TARGET_DIR:-target}"
bin="${VERITRAILD_BIN:-$target/debug/veritraild}"
[ -x "$bin" ] || { echo "run.sh: $bin is missing; run 'make run' (it builds it)" >&2; exit 2; }

pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "stopping the cluster..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
  echo "stopped; data kept in ./data (delete it to start a fresh cluster)"
}
trap stop INT TERM EXIT

for i in 1 2 3; do
  mkdir -p "data/node$i"
  "$bin" --config "deploy/local/node$i.toml" >>"data/node$i.log" 2>&1 &
  pids+=("$!")
done

# Wait (at most 60 s) until node 1 sees a leader and three voters.
for _ in $(seq 1 120); do
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "a node exited; see data/node*.log" >&2; tail -n 20 data/node*.log >&2; exit 1; }
  done
  if "$bin" status --addr 127.0.0.1:7001 --require-voters 3 >/dev/null 2>&1; then break; fi
  sleep 0.5
done
"$bin" status --addr 127.0.0.1:7001 --require-voters 3 || { echo "the cluster did not form; see data/node*.log" >&2; exit 1; }

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

Ctrl-C stops the cluster.
MSG
wait "${pids[@]}"
