#!/usr/bin/env bash
# Build the lab node image (Debian 12, systemd + sshd) from the distribution
# archive with debootstrap + `podman import`; no container registry is needed.
# Cached: key = this script's hash + ISO week (so Debian updates flow in); the
# image carries the key as a label, and an oci-archive of it is kept under
# /var/cache/chutes-miner-lab so a fresh podman store loads it in seconds.
set -euo pipefail
# shellcheck source=tests/lab/env.sh
source "$(dirname "$0")/env.sh"

cache_dir=/var/cache/chutes-miner-lab
key="$(sha256sum "$0" | cut -c1-12)-$(date +%G-W%V)"
image="$CHUTES_LAB_IMAGE"

if podman image exists "$image" &&
  [[ "$(podman image inspect --format '{{index .Labels "chutes-miner-lab.key"}}' "$image" 2>/dev/null)" == "$key" ]]; then
  echo "build-image: $image is current ($key)"
  exit 0
fi
archive="$cache_dir/node-$key.oci.tar"
if [[ -f "$archive" ]]; then
  echo "build-image: loading $archive"
  podman load -q -i "$archive" >/dev/null
  podman tag "$(podman images -q --filter "label=chutes-miner-lab.key=$key" | head -1)" "$image"
  exit 0
fi

# The Debian archive URL comes from this machine's apt configuration, never from the repo.
mirror="${DEBIAN_MIRROR:-}"
if [[ -z "$mirror" ]]; then
  mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
fi
if [[ -z "$mirror" ]]; then
  mirror="$(awk '$1 == "deb" && $3 ~ /^bookworm$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
fi
[[ -n "$mirror" ]] || { echo "build-image: cannot find the Debian archive in /etc/apt; set DEBIAN_MIRROR" >&2; exit 1; }
security="$(awk '/^URIs:/ && /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
[[ -n "$security" ]] || security="${mirror%/debian}/debian-security"

rootfs="$(mktemp -d /var/tmp/chutes-miner-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
echo "build-image: debootstrap bookworm from $mirror"
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,python3,python3-apt,openssh-server,sudo,iproute2,iputils-ping,ca-certificates,procps,gnupg,curl \
  bookworm "$rootfs" "$mirror" >"$CHUTES_LAB_DIR/debootstrap.log" 2>&1 ||
  { tail -20 "$CHUTES_LAB_DIR/debootstrap.log" >&2; exit 1; }

# Units that fail or stall in a container.
for unit in getty.target console-getty.service systemd-logind.service systemd-udevd.service \
  systemd-udevd-control.socket systemd-udevd-kernel.socket sys-kernel-debug.mount \
  sys-kernel-tracing.mount dev-hugepages.mount systemd-remount-fs.service systemd-firstboot.service; do
  ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
# Each container generates its own SSH host keys on first boot.
rm -f "$rootfs"/etc/ssh/ssh_host_*
cat >"$rootfs/etc/systemd/system/ssh-host-keys.service" <<'UNIT'
[Unit]
Description=Generate SSH host keys on first boot
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
UNIT
# A container's root mount is private (podman, unlike systemd on a host, does not make
# it shared): kubelet mounts with HostToContainer/Bidirectional propagation need it
# shared (tests/lab/README.md, "Kubernetes nodes"). Fails harmlessly when unprivileged.
cat >"$rootfs/etc/systemd/system/lab-rshared-root.service" <<'UNIT'
[Unit]
Description=Make / a shared mount, as on a host
DefaultDependencies=no
Before=local-fs.target

[Service]
Type=oneshot
ExecStart=-/bin/mount --make-rshared /
RemainAfterExit=yes

[Install]
WantedBy=local-fs.target
UNIT
chroot "$rootfs" systemctl enable ssh-host-keys.service ssh.service lab-rshared-root.service >/dev/null 2>&1
: >"$rootfs/etc/machine-id"
rm -f "$rootfs/etc/apt/sources.list"
cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<SRC
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin

echo "build-image: importing $image"
tar -C "$rootfs" -c . | podman import -q \
  --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL SIGRTMIN+3' \
  --change 'ENV container=podman' --change "LABEL chutes-miner-lab.key=$key" \
  - "$image" >/dev/null
mkdir -p "$cache_dir"
rm -f "$cache_dir"/node-*.oci.tar
podman save -q --format oci-archive -o "$archive" "$image"
echo "build-image: built $image ($key)"
