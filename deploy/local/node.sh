#!/usr/bin/env bash
# One node of the local cluster that `make run` starts (deploy/local/run.sh):
#
#   node.sh start N    start node N again, with its data (N > 3: a node added with `add`)
#   node.sh stop N     stop node N (SIGTERM; it drains, then exits), its data kept
#   node.sh add N      start node N (N > 3), empty, and make it a voter: add-learner
#                      (waits until it caught up), then promote
#   node.sh remove N   take node N out of the cluster; it stops by itself, and its data
#                      directory is moved aside (a removed node never rejoins)
#   node.sh list       the nodes and whether each runs
#
# Node N listens on 127.0.0.1:700N (metrics 910N) and keeps its data in data/nodeN and
# its log in data/nodeN.log; data/nodeN.pid holds the pid of a running node. Nodes 1 to
# 3 use deploy/local/nodeN.toml; `add` writes data/nodeN.toml for the others.
set -euo pipefail
cd "$(dirname "$0")/../.."

target="${CARGO_TARGET_DIR:-target}"
bin="${VERITRAILD_BIN:-$target/debug/veritraild}"
cli="${VERITRAIL_BIN:-$(dirname "$bin")/veritrail}"

die() { echo "node.sh: $*" >&2; exit 2; }

config_of() {
  local n="$1"
  if [ "$n" -le 3 ]; then echo "deploy/local/node$n.toml"; else echo "data/node$n.toml"; fi
}

pid_of() {
  local file="data/node$1.pid"
  [ -f "$file" ] || return 1
  local pid
  pid="$(cat "$file")"
  kill -0 "$pid" 2>/dev/null || { rm -f "$file"; return 1; }
  echo "$pid"
}

# Every node this cluster has: 1 to 3, and each added one whose data is here.
known_nodes() {
  local n
  for n in 1 2 3; do [ -d "data/removed/node$n" ] || echo "$n"; done
  for f in data/node*.toml; do
    [ -e "$f" ] || continue
    n="${f#data/node}"; n="${n%.toml}"
    [ -d "data/node$n" ] && echo "$n"
  done
  return 0
}

start() {
  local n="$1" config
  config="$(config_of "$n")"
  [ -f "$config" ] || die "node $n has no configuration ($config); add it with: node.sh add $n"
  [ -d "data/removed/node$n" ] && die "node $n was removed from the cluster; a removed node never rejoins (add a new one under another id)"
  [ -x "$bin" ] || die "$bin is missing; run 'make run' (it builds it)"
  if pid="$(pid_of "$n")"; then
    echo "node $n already runs (pid $pid)"
    return 0
  fi
  mkdir -p "data/node$n"
  # setsid: a node started here outlives this shell, and Ctrl-C in this terminal
  # does not reach it; run.sh's Ctrl-C stops it through its pid file.
  setsid "$bin" --config "$config" >>"data/node$n.log" 2>&1 < /dev/null &
  echo "$!" > "data/node$n.pid"
  echo "node $n started (pid $!, 127.0.0.1:700$n, log data/node$n.log)"
}

stop() {
  local n="$1" pid
  if ! pid="$(pid_of "$n")"; then
    echo "node $n is not running"
    return 0
  fi
  kill -TERM "$pid"
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { rm -f "data/node$n.pid"; echo "node $n stopped"; return 0; }
    sleep 0.5
  done
  echo "node $n did not stop within 30 s; sending SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "data/node$n.pid"
}

endpoints() {
  local n list=""
  for n in $(known_nodes); do
    [ "$n" = "${1:-}" ] && continue
    list="${list:+$list,}127.0.0.1:700$n"
  done
  echo "$list"
}

add() {
  local n="$1"
  [ "$n" -gt 3 ] && [ "$n" -le 9 ] || die "add takes a new node id from 4 to 9 (ports 7004 to 7009)"
  [ -d "data/node$n" ] && die "node $n already has data in data/node$n; start it with: node.sh start $n"
  [ -x "$cli" ] || die "$cli is missing; run 'make run' (it builds it)"
  cat > "data/node$n.toml" <<TOML
# Node $n of the local cluster, added by deploy/local/node.sh.
node_id = $n
listen_addr = "127.0.0.1:700$n"
metrics_addr = "127.0.0.1:910$n"
data_dir = "data/node$n"
origin = "veritrail.local/audit"

[tls]
insecure_dev = true
TOML
  local peers
  peers="$(endpoints "$n")"
  start "$n"
  "$cli" --endpoints "$peers" cluster add-learner --id "$n" --addr "127.0.0.1:700$n"
  "$cli" --endpoints "$peers" cluster promote --id "$n"
}

remove() {
  local n="$1" peers
  peers="$(endpoints "$n")"
  [ -x "$cli" ] || die "$cli is missing; run 'make run' (it builds it)"
  "$cli" --endpoints "$peers" cluster remove --id "$n"
  # It stops by itself once it learns it was removed; make sure.
  stop "$n"
  mkdir -p data/removed
  [ -d "data/node$n" ] && mv "data/node$n" "data/removed/node$n"
  echo "node $n removed; its data is in data/removed/node$n, of no further use"
}

list() {
  local n pid
  for n in $(known_nodes); do
    if pid="$(pid_of "$n")"; then
      echo "node $n  127.0.0.1:700$n  running (pid $pid)"
    else
      echo "node $n  127.0.0.1:700$n  stopped"
    fi
  done
}

command="${1:-}"
case "$command" in
  start|stop|add|remove)
    [[ "${2:-}" =~ ^[1-9]$ ]] || die "usage: node.sh $command N (a node id from 1 to 9)"
    "$command" "$2"
    ;;
  list) list ;;
  known) known_nodes ;;
  endpoints) endpoints ;;
  *) die "usage: node.sh start|stop|add|remove N, or node.sh list" ;;
esac
