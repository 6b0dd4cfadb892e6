#!/usr/bin/env bash
# Build the lab's slim base image (localhost/chutes-miner-lab-base:bookworm): a Debian 12
# minbase from debootstrap + `podman import`, without documentation, manual pages or
# translations (dpkg excludes them in later installs too), apt lists or caches. The images
# of build-miner-images.sh are built FROM it; the node image (build-image.sh) is too large.
# The Debian archive comes from the node image's apt sources (this machine's configuration).
# Cached like build-image.sh: key = hash of this script + the node image key (ISO week).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tests/lab/env.sh
source "$here/env.sh"

image="${CHUTES_LAB_BASE_IMAGE:-localhost/chutes-miner-lab-base:bookworm}"
label=chutes-miner-lab.base-key
"$here/build-image.sh" >/dev/null
node_key="$(podman image inspect --format '{{index .Labels "chutes-miner-lab.key"}}' "$CHUTES_LAB_IMAGE")"
key="$( (cat "$0"; echo "$node_key") | sha256sum | cut -c1-12)"

if podman image exists "$image" &&
  [[ "$(podman image inspect --format "{{index .Labels \"$label\"}}" "$image" 2>/dev/null)" == "$key" ]]; then
  echo "build-base-image: $image is current ($key)"
  exit 0
fi

sources="$(podman run --rm --network none --entrypoint /bin/cat "$CHUTES_LAB_IMAGE" \
  /etc/apt/sources.list.d/debian.sources)"
mirror="$(awk '/^URIs:/ {print $2; exit}' <<<"$sources")"
[[ -n "$mirror" ]] || { echo "build-base-image: no URIs line in $CHUTES_LAB_IMAGE's debian.sources" >&2; exit 1; }

rootfs="$(mktemp -d /var/tmp/chutes-miner-base.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs/etc/dpkg/dpkg.cfg.d"
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/chutes-lab-slim" <<'CFG'
# Managed by chutes.miner tests/lab/build-base-image.sh: no documentation in images.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
CFG
echo "build-base-image: debootstrap bookworm (minbase) from $mirror"
debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$CHUTES_LAB_DIR/debootstrap-base.log" 2>&1 ||
  { tail -20 "$CHUTES_LAB_DIR/debootstrap-base.log" >&2; exit 1; }
find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$rootfs"/usr/share/{man,info,locale,lintian}/*
cat >"$rootfs/etc/apt/apt.conf.d/90chutes-lab-slim" <<'CFG'
// Managed by chutes.miner tests/lab/build-base-image.sh: no recommends, no package cache.
APT::Install-Recommends "false";
APT::Install-Suggests "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
CFG
# Package scripts never start daemons in an image build (as in Debian's official images).
printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
rm -f "$rootfs/etc/apt/sources.list"
printf '%s\n' "$sources" >"$rootfs/etc/apt/sources.list.d/debian.sources"
: >"$rootfs/etc/machine-id"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/* "$rootfs"/tmp/*

echo "build-base-image: importing $image"
tar -C "$rootfs" -c . | podman import -q --change 'CMD ["/bin/bash"]' \
  --change "LABEL $label=$key" - "$image" >/dev/null
echo "build-base-image: built $image ($key, $(podman image inspect --format '{{.Size}}' "$image") bytes)"
