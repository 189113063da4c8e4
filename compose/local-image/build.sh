#!/usr/bin/env bash
# Build a PostgreSQL image with no registry: debootstrap a minimal Debian with postgresql-<major>
# from Debian's packages, add an entrypoint that behaves like the official image's, and
# `docker import` it. Cached by tag: an existing image is kept unless --force.
#
#   compose/local-image/build.sh [--force] [TAG]      (default TAG: movelib/postgres:15-local)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
force=0
if [ "${1:-}" = "--force" ]; then force=1; shift; fi
tag=${1:-movelib/postgres:15-local}
major=${POSTGRES_MAJOR:-15}
suite=${DEBIAN_SUITE:-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [ "$force" = 0 ] && docker image inspect "$tag" >/dev/null 2>&1; then
    echo "image $tag already built (pass --force to rebuild)"
    exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
echo "debootstrap $suite with postgresql-$major into $rootfs"
debootstrap --variant=minbase --include="postgresql-$major" "$suite" "$rootfs" "$mirror" >/dev/null
install -m 0755 "$here/docker-entrypoint.sh" "$rootfs/usr/local/bin/docker-entrypoint.sh"
rm -rf "$rootfs"/var/lib/postgresql/"$major" "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
mkdir -p "$rootfs/var/lib/postgresql/data"

tar -C "$rootfs" -c . | docker import \
    --change 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
    --change 'ENV PGDATA=/var/lib/postgresql/data LANG=C.UTF-8' \
    --change 'EXPOSE 5432' \
    --change 'VOLUME /var/lib/postgresql' \
    - "$tag" >/dev/null
echo "built $tag"
