#!/usr/bin/env bash
# Smoke test of a compose cluster, for CI before the fault suite: start it under a project name of its own,
# wait (with a deadline) until every node is healthy, produce records from the host through the published
# port with acks=all and read them back, print what happened, and tear everything down (`down -v`), also
# when a step fails or the script is interrupted.
#
# Usage: deploy/smoke.sh [COMPOSE_FILE]          (default: deploy/docker-compose.yml)
#   STRATA_IMAGE            image the compose file runs (default strata:local; built with
#                           deploy/build-image.sh when missing)
#   STRATA_SMOKE_BOOTSTRAP  where the host client starts (default 127.0.0.1:19092)
#   STRATA_SMOKE_DEADLINE_S how long the nodes may take to become healthy (default 120)
#   STRATA_BIN              the `strata` client to run on the host (default: the image's own binary,
#                           copied out of it)
#
# The cluster publishes fixed host ports (19092-19094), so two runs at once on one machine collide.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
file=${1:-$here/docker-compose.yml}
# The compose files read STRATA_IMAGE too.
export STRATA_IMAGE=${STRATA_IMAGE:-strata:local}
image=$STRATA_IMAGE
bootstrap=${STRATA_SMOKE_BOOTSTRAP:-127.0.0.1:19092}
deadline_s=${STRATA_SMOKE_DEADLINE_S:-120}
project="strata-smoke-$$"
records=100

if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  compose=(docker-compose)
fi
dc() { "${compose[@]}" --project-name "$project" --file "$file" "$@"; }
say() { echo "smoke: $*" >&2; }

workdir=$(mktemp -d)
started=false
cleanup() {
  local status=$?
  if $started; then
    if [ "$status" -ne 0 ]; then
      say "failed; the nodes' last log lines:"
      dc logs --no-color --tail 30 >&2 || true
    fi
    say "tearing down $project"
    dc down --volumes --remove-orphans >&2 || true
  fi
  rm -rf "$workdir"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ! docker image inspect "$image" >/dev/null 2>&1; then
  say "no image $image: building it"
  "$here/build-image.sh" "$image" >&2
fi
strata=${STRATA_BIN:-}
if [ -z "$strata" ]; then
  # The client is the very binary the nodes run: static, so it runs on the host too.
  holder=$(docker create "$image")
  docker cp "$holder:/strata" "$workdir/strata" >/dev/null
  docker rm --volumes "$holder" >/dev/null
  strata=$workdir/strata
fi

say "starting $file as project $project"
started=true
start=$(date +%s%N)
dc up --detach >&2

# As many healthy containers as the file has services, or fail at the deadline. (Counted, because
# `docker compose ps` leaves out a container that is restarting.)
nodes=$(dc config --services | wc -l)
states=
while :; do
  mapfile -t ids < <(dc ps --quiet)
  if [ "${#ids[@]}" -gt 0 ]; then
    states=$(docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "${ids[@]}")
    if [ "$(grep -c '^healthy$' <<<"$states")" -eq "$nodes" ]; then
      break
    fi
  fi
  if [ $(( ($(date +%s%N) - start) / 1000000000 )) -ge "$deadline_s" ]; then
    say "not healthy within ${deadline_s}s: $(tr '\n' ' ' <<<"$states")"
    exit 1
  fi
  sleep 0.2
done
healthy_ms=$(( ($(date +%s%N) - start) / 1000000 ))
say "$nodes nodes healthy ${healthy_ms} ms after \`up\`"

topic="smoke-$$"
"$strata" topic create "$topic" --partitions 3 --replication-factor 3 --bootstrap "$bootstrap" >&2
seq 1 "$records" | sed 's/^/record-/' > "$workdir/sent"
"$strata" produce "$topic" --acks all --bootstrap "$bootstrap" < "$workdir/sent" >&2
"$strata" consume "$topic" --from earliest --count "$records" --format '%p %o %v' --bootstrap "$bootstrap" \
  > "$workdir/read"
cut -d' ' -f3 "$workdir/read" | sort > "$workdir/received"
if ! sort "$workdir/sent" | cmp -s - "$workdir/received"; then
  say "sent $records records to $topic, read back $(wc -l < "$workdir/read"):"
  head -20 "$workdir/read" >&2
  exit 1
fi
"$strata" topic describe "$topic" --bootstrap "$bootstrap"
echo "smoke: ok: $records records produced (acks=all) and consumed through $bootstrap;" \
  "$nodes nodes healthy ${healthy_ms} ms after \`up\`"
