#!/bin/bash
# Two 2-node clusters on this machine, one with TLS (rayo start's default) and one
# with --tls=false; the cross-node microbenchmarks against each, alternately, in
# one run (FILTER picks the metrics; default cross_node). Stops its daemons at the end.
set -e
B=${B:-$(mktemp -d)}
cd "$(dirname "$0")/.." && go build -o $B/rayo ./cmd/rayo
rm -rf $B/s-*; mkdir -m 700 -p $B/s-tls-head $B/s-tls-n1 $B/s-plain-head $B/s-plain-n1
free() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
P1=$(free); P2=$(free)
RAYO_STATE_DIR=$B/s-tls-head $B/rayo start --head --port $P1 --num-cpus 1 --dashboard-port 0 >/dev/null
RAYO_STATE_DIR=$B/s-plain-head $B/rayo start --head --port $P2 --num-cpus 1 --dashboard-port 0 --tls=false >/dev/null
JT=$(python3 -c "import json;print(json.load(open('$B/s-tls-head/cluster.json'))['join_token'])")
PT=$(python3 -c "import json;print(json.load(open('$B/s-plain-head/cluster.json'))['token'])")
RAYO_STATE_DIR=$B/s-tls-n1 RAYO_TOKEN=$JT $B/rayo start --address 127.0.0.1:$P1 --num-cpus 1 >/dev/null
RAYO_STATE_DIR=$B/s-plain-n1 RAYO_TOKEN=$PT $B/rayo start --address 127.0.0.1:$P2 --num-cpus 1 --tls=false >/dev/null
for i in 1 2; do
  echo "== plain (--tls=false), round $i"
  RAYO_STATE_DIR=$B/s-plain-head $B/rayo microbenchmark --address 127.0.0.1:$P2 --filter "${FILTER:-cross_node}" --json
  echo
  echo "== TLS, round $i"
  RAYO_STATE_DIR=$B/s-tls-head $B/rayo microbenchmark --address 127.0.0.1:$P1 --filter "${FILTER:-cross_node}" --json
  echo
done
for d in s-tls-n1 s-plain-n1 s-tls-head s-plain-head; do RAYO_STATE_DIR=$B/$d $B/rayo stop >/dev/null || true; done
