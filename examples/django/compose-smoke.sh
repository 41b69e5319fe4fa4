#!/usr/bin/env bash
# Brings the shop up with Docker Compose next to a three-node deploy/ cluster, as README.md tells users to,
# and checks it end to end: three order workers share the three partitions, twelve orders posted to the
# web container are published, fulfilled and receipted by Celery, with node1 stopped after the sixth.
# Tears both stacks down (volumes too) at the end, whatever happened.
#
# Usage: examples/django/compose-smoke.sh
#   STRATA_IMAGE  the Strata image (default strata:local: deploy/build-image.sh)
#   PYTHON_IMAGE  the shop's base image (default python:3.11-slim; build-base-image.sh makes one from
#                 Debian's packages and PyPI where no container registry is reachable)
# Uses the host ports of deploy/docker-compose.yml (19092-19094, 19644-19646) and 8000.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# Letters only: docker-compose 1.29 drops other characters from project names, v2 keeps them.
cluster=shopsmokestrata
shop=shopsmoke
export STRATA_NETWORK=${cluster}_default
# How long each wait may take, in seconds.
wait_s_max=120

if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
strata_compose() { "${compose[@]}" -f "$root/deploy/docker-compose.yml" -p "$cluster" "$@"; }
shop_compose() { "${compose[@]}" -f "$here/docker-compose.yml" -p "$shop" "$@"; }

cleanup() {
  shop_compose down -v >/dev/null 2>&1 || true
  strata_compose down -v >/dev/null 2>&1 || true
}
trap cleanup EXIT

fail() {
  echo "compose-smoke: $*" >&2
  shop_compose logs --no-color --tail 40 >&2 || true
  exit 1
}

# Waits until the command "$@" succeeds, at most wait_s_max seconds.
wait_until() {
  local what=$1
  shift
  local deadline=$((SECONDS + wait_s_max))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "timed out after ${wait_s_max} s waiting for $what"
    sleep 1
  done
}

post_order() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST localhost:8000/orders/ \
    -d "{\"customer\": \"smoke-$1\", \"total_cents\": $((1000 + $1))}")
  [ "$code" = 201 ] || fail "order $1: HTTP $code, not 201"
}

# Exits 0 once the newest orders listed are $1, all fulfilled and receipted.
all_done() {
  curl -sf localhost:8000/orders/ | python3 -c '
import json, sys
orders = json.load(sys.stdin)["orders"]
done = [o for o in orders if o["fulfilled_at"] and o["receipt_sent_at"]]
sys.exit(0 if len(orders) == len(done) == int(sys.argv[1]) else 1)' "$1"
}

cleanup
strata_compose up -d
for port in 19644 19645 19646; do
  wait_until "the node with HTTP port $port to be healthy" curl -sf "http://127.0.0.1:$port/health"
done
shop_compose up -d --build --scale worker=3
wait_until "the web container to answer" curl -sf localhost:8000/orders/
wait_until "three workers with a partition each" \
  bash -c "[ \"\$(${compose[*]} -f '$here/docker-compose.yml' -p $shop logs --no-color worker | grep -c 'assigned \[[0-9]\]')\" -ge 3 ]"

for i in 1 2 3 4 5 6; do post_order "$i"; done
docker stop "$(strata_compose ps -q node1)" >/dev/null
for i in 7 8 9 10 11 12; do post_order "$i"; done
wait_until "the twelve orders to be fulfilled and receipted" all_done 12

echo "compose-smoke: 12 orders published, fulfilled by 3 workers and receipted by Celery; node1 stopped after the 6th"
