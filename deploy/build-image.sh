#!/usr/bin/env bash
# Builds the static `strata` binary and the image `strata:local` (or the tag given) from it, with no
# registry: the image is `FROM scratch`, and docker is handed a context holding only the Dockerfile, the
# binary and an empty data directory, not the repository.
#
# Usage: deploy/build-image.sh [TAG]
#   STRATA_CARGO_PROFILE  cargo profile to build with (default: dist, see Cargo.toml)
#   CARGO_TARGET_DIR      honoured, as cargo does
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
tag=${1:-strata:local}
profile=${STRATA_CARGO_PROFILE:-dist}
triple=x86_64-unknown-linux-gnu

cd "$root"
# Statically linked glibc: the image has no libc to load. An explicit --target keeps RUSTFLAGS away from
# build scripts and proc macros, which must stay dynamic.
RUSTFLAGS='-C target-feature=+crt-static' \
  cargo build --locked --profile "$profile" --target "$triple" -p strata-broker --bin strata >&2

target_dir=${CARGO_TARGET_DIR:-$root/target}
# cargo names the `dev` profile's directory `debug`.
case "$profile" in dev) out=debug ;; *) out=$profile ;; esac
binary="$target_dir/$triple/$out/strata"
if readelf --program-headers "$binary" | grep -q INTERP; then
  echo "build-image: $binary is dynamically linked; a FROM scratch image cannot run it" >&2
  exit 1
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$here/Dockerfile" "$context/Dockerfile"
cp "$binary" "$context/strata"
mkdir "$context/data"

revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
docker build --quiet --tag "$tag" --label "org.opencontainers.image.revision=$revision" "$context" >&2
size=$(docker image inspect --format '{{.Size}}' "$tag")
echo "built $tag: $((size / 1000)) kB (binary $(($(stat -c %s "$binary") / 1000)) kB, profile $profile, revision $revision)"
