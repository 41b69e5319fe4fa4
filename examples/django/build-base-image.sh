#!/usr/bin/env bash
# Builds a Python base image for the shop without any container registry: a minimal Debian bookworm (its
# python3 is 3.11) made by debootstrap from Debian's packages, with a venv at /opt/venv holding
# requirements.txt's packages (wheels fetched by the host's pip from PyPI), imported into Docker. With it,
# the Dockerfile's `pip install` finds everything installed and needs no network.
#
# Usage: examples/django/build-base-image.sh [TAG]     (default shop-python-base:local; as root)
#   then: PYTHON_IMAGE=shop-python-base:local examples/django/compose-smoke.sh
# Needs debootstrap (Debian: apt-get install debootstrap), pip and python3 on the host.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
tag=${1:-shop-python-base:local}
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT

debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" \
  http://deb.debian.org/debian >&2
mkdir "$rootfs/tmp/wheels"
python3 -m pip download --quiet --disable-pip-version-check --only-binary=:all: --python-version 3.11 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform any -d "$rootfs/tmp/wheels" -r "$here/requirements.txt" >&2
cp "$here/requirements.txt" "$rootfs/tmp/requirements.txt"
chroot "$rootfs" python3 -m venv /opt/venv
chroot "$rootfs" /opt/venv/bin/pip install --quiet --disable-pip-version-check --no-index \
  --find-links /tmp/wheels -r /tmp/requirements.txt >&2
rm -rf "$rootfs/tmp/wheels" "$rootfs/tmp/requirements.txt" "$rootfs"/var/cache/apt/archives/*.deb

tar -C "$rootfs" -c . | docker import \
  --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' - "$tag" >&2
docker run --rm "$tag" python -c 'import celery, confluent_kafka, django' \
  || { echo "build-base-image: $tag cannot import the shop's packages" >&2; exit 1; }
echo "built $tag"
