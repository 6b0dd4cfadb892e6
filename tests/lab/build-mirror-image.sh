#!/usr/bin/env bash
# Build the lab mirror host image (localhost/chutes-miner-lab-mirror:bookworm)
# FROM the lab node image: apt-cacher-ng :3142, a static PyPI index :8081,
# Debian's docker-registry :5000 (seeded with images built here), dnsmasq :53
# (query log), chrony (NTP), the binary repository :8082 (lab.sh mounts it).
# Cached like build-image.sh: key = hash of this script + tests/lab/mirror/ and images/ +
# the node image key + the CoreDNS binary of tests/lab/k8s/build.sh (run here, a no-op when
# current); the image carries it as a label and an oci-archive of it is kept under
# /var/cache/chutes-miner-lab.
# Archive and PyPI hosts come from this machine's apt and pip configuration.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tests/lab/env.sh
source "$here/env.sh"

image="${CHUTES_LAB_MIRROR_IMAGE:-localhost/chutes-miner-lab-mirror:bookworm}"
cache_dir=/var/cache/chutes-miner-lab
base_key="$(podman image inspect --format '{{index .Labels "chutes-miner-lab.key"}}' "$CHUTES_LAB_IMAGE")"
# shellcheck source=tests/lab/k8s/versions.env
source "$here/k8s/versions.env"
coredns_bin="$("$here/k8s/build.sh" | tail -1)/bin/coredns"
key="$( (cat "$0"; find "$here/mirror" "$here/images" -type f -print0 | sort -z | xargs -0 cat; echo "$base_key"
  sha256sum <"$coredns_bin") | sha256sum | cut -c1-12)"
label=chutes-miner-lab.mirror-key

print_digests() {
  podman run --rm --entrypoint /bin/cat "$image" /srv/lab/images.json
}

if podman image exists "$image" &&
  [[ "$(podman image inspect --format "{{index .Labels \"$label\"}}" "$image" 2>/dev/null)" == "$key" ]]; then
  echo "build-mirror-image: $image is current ($key)"
  print_digests
  exit 0
fi
archive="$cache_dir/mirror-$key.oci.tar"
if [[ -f "$archive" ]]; then
  echo "build-mirror-image: loading $archive"
  podman load -q -i "$archive" >/dev/null
  podman tag "$(podman images -q --filter "label=$label=$key" | head -1)" "$image"
  print_digests
  exit 0
fi

work="$(mktemp -d /var/tmp/chutes-miner-mirror.XXXXXX)"
seed=chutes-lab-mirror-seed
# Sandbox image tags: 3.10 and 3.10.1 (Kubernetes 1.34 and containerd 2.x),
# 3.7 (microk8s 1.31). The test app image is pinned to Debian 12's busybox.
pause_tags=(3.7 3.10 3.10.1)
busybox_tag=1.35.0
pause_ref=registry.k8s.io/pause:3.10
bb_ref=localhost/chutes-lab-seed/busybox:$busybox_tag
miner_ref=localhost/chutes-lab-seed/miner:lab
coredns_ref=registry.k8s.io/coredns/coredns:v$COREDNS_VERSION
cleanup() {
  podman rm -f -t 2 "$seed" >/dev/null 2>&1 || true
  podman rmi -f "$image-stage" "$pause_ref" "$bb_ref" "$miner_ref" "$coredns_ref" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# 1. Build context: the checked-in files plus what this machine knows.
cp -a "$here/mirror/." "$work/"
mkdir -p "$work/pause-ctx" "$work/coredns-ctx"
sources=/etc/apt/sources.list.d/debian.sources
debian="${DEBIAN_MIRROR:-$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' "$sources" 2>/dev/null || true)}"
security="$(awk '/^URIs:/ && /security/ {print $2; exit}' "$sources" 2>/dev/null || true)"
[[ -n "$debian" ]] || { echo "build-mirror-image: no Debian archive in $sources; set DEBIAN_MIRROR" >&2; exit 1; }
[[ -n "$security" ]] || security="${debian%/debian}/debian-security"
echo "${debian%/}/" >"$work/rootfs/etc/apt-cacher-ng/backends_debian"
echo "${security%/}/" >"$work/rootfs/etc/apt-cacher-ng/backends_debian_security"

echo "build-mirror-image: pip download (this machine's pip configuration)"
mkdir -p "$work/pypi/packages"
grep -v '^\s*#' "$here/mirror/pypi-packages.txt" | grep -v '^\s*$' >"$work/requirements.txt"
python3 -m pip download -q --only-binary=:all: --python-version 3.11 \
  -d "$work/pypi/packages" -r "$work/requirements.txt"
# A PEP 503 simple index over the downloaded files, with sha256 fragments.
python3 - "$work/pypi" <<'PY'
import hashlib, html, pathlib, re, sys
root = pathlib.Path(sys.argv[1])
projects: dict[str, list[pathlib.Path]] = {}
for f in sorted((root / "packages").iterdir()):
    name = re.sub(r"[-_.]+", "-", f.name.split("-")[0]).lower()
    projects.setdefault(name, []).append(f)
simple = root / "simple"
simple.mkdir()
head = '<!DOCTYPE html><html><head><meta name="pypi:repository-version" content="1.0"></head><body>\n'
links = "".join(f'<a href="{n}/">{n}</a>\n' for n in sorted(projects))
(simple / "index.html").write_text(head + links + "</body></html>\n")
for name, files in projects.items():
    (simple / name).mkdir()
    rows = []
    for f in files:
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        rows.append(f'<a href="../../packages/{html.escape(f.name)}#sha256={digest}">{html.escape(f.name)}</a>\n')
    (simple / name / "index.html").write_text(head + "".join(rows) + "</body></html>\n")
PY

# 2. The packages and configuration.
echo "build-mirror-image: podman build"
podman build -q --network podman --build-arg "BASE_IMAGE=$CHUTES_LAB_IMAGE" \
  -t "$image-stage" "$work" >/dev/null

# 3. Seed the registry: boot the image once, push, commit.
podman run -d --name "$seed" --privileged --systemd=always --label chutes-miner-lab=mirror-build \
  "$image-stage" >/dev/null
ip="$(podman inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$seed")"
for _ in $(seq 60); do
  curl -fsS "http://$ip:5000/v2/" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -fsS "http://$ip:5000/v2/" >/dev/null || { echo "build-mirror-image: registry did not start" >&2; exit 1; }

# Images the lab builds itself, no registry needed (tests/lab/README.md, "Images"):
# - pause: our static sandbox program (images/pause/) FROM scratch, under every
#   pause tag a Kubernetes release or microk8s asks for;
# - busybox: Debian's busybox-static with every applet linked, the pinned test
#   app image (library/busybox:<version>) and the mirrors canary (:latest);
# - parachutes/miner:lab: a stand-in for the miner image;
# - coredns: the cluster DNS (images/coredns/), the binary tests/lab/k8s/build.sh built.
gcc -Os -static -Wall -Wextra -Werror -o "$work/pause-ctx/pause" "$here/images/pause/pause.c"
strip "$work/pause-ctx/pause"
cp "$here/images/pause/Containerfile" "$work/pause-ctx/"
podman build -q --network none -t "$pause_ref" "$work/pause-ctx" >/dev/null
mkdir -p "$work/bb/bin"
podman cp "$seed:/bin/busybox" "$work/bb/bin/busybox"
bb_version="$(podman exec "$seed" busybox | sed -n '1s/^BusyBox v\([0-9.]*\).*/\1/p')"
[[ "$bb_version" == "$busybox_tag" ]] || {
  echo "build-mirror-image: Debian's busybox is v$bb_version, the lab pins $busybox_tag (update busybox_tag and inventories/lab)" >&2
  exit 1
}
for applet in $(podman exec "$seed" busybox --list); do
  [[ "$applet" == busybox ]] || ln -sf busybox "$work/bb/bin/$applet"
done
bb_import() { # local-ref cmd-json label
  tar -C "$work/bb" -c bin | podman import -q --change "CMD $2" --change "LABEL chutes-miner-lab.seed=$3" \
    - "$1" >/dev/null
}
bb_import "$bb_ref" '["/bin/sh"]' "library/busybox:$busybox_tag"
bb_import "$miner_ref" '["/bin/sh","-c","echo chutes miner lab stand-in; sleep 2147483647"]' parachutes/miner:lab
cp "$coredns_bin" "$here/images/coredns/Containerfile" "$work/coredns-ctx/"
podman build -q --network none -t "$coredns_ref" "$work/coredns-ctx" >/dev/null
# All must run, not only exist in the registry.
podman run --rm --network none "$pause_ref" -v >/dev/null
[[ "$(podman run --rm --network none "$bb_ref" /bin/sh -c 'echo ok')" == ok ]] ||
  { echo "build-mirror-image: the busybox image does not run" >&2; exit 1; }
[[ "$(podman run --rm --network none "$coredns_ref" -version | head -1)" == "CoreDNS-$COREDNS_VERSION" ]] ||
  { echo "build-mirror-image: the CoreDNS image does not run or is not v$COREDNS_VERSION" >&2; exit 1; }
# registry path -> local image
declare -A seeds=(
  ["library/busybox:$busybox_tag"]="$bb_ref"
  [library/busybox:latest]="$bb_ref"
  [parachutes/miner:lab]="$miner_ref"
  ["coredns/coredns:v$COREDNS_VERSION"]="$coredns_ref"
)
for tag in "${pause_tags[@]}"; do seeds["pause:$tag"]="$pause_ref"; done
echo "{" >"$work/images.json"
first=1
while read -r ref; do
  podman push -q --tls-verify=false --digestfile "$work/digest" "${seeds[$ref]}" "docker://$ip:5000/$ref"
  ((first)) || echo "," >>"$work/images.json"
  first=0
  printf '  "%s": "%s"' "$ref" "$(cat "$work/digest")" >>"$work/images.json"
done < <(printf '%s\n' "${!seeds[@]}" | sort)
printf '\n}\n' >>"$work/images.json"
podman exec "$seed" mkdir -p /srv/lab
podman cp "$work/images.json" "$seed:/srv/lab/images.json"
# Leave no per-boot state in the image: host keys, machine id, caches, logs.
podman exec "$seed" sh -c 'systemctl stop docker-registry apt-cacher-ng dnsmasq chrony;
  rm -f /etc/ssh/ssh_host_* /var/log/dnsmasq/* /var/lib/chrony/*; : >/etc/machine-id;
  rm -rf /var/cache/apt-cacher-ng/* /var/log/apt-cacher-ng/*; journalctl --rotate --vacuum-time=1s >/dev/null 2>&1 || true'
podman stop -t 2 "$seed" >/dev/null
podman commit -q --change "LABEL $label=$key" "$seed" "$image" >/dev/null

mkdir -p "$cache_dir"
rm -f "$cache_dir"/mirror-*.oci.tar
podman save -q --format oci-archive -o "$archive" "$image"
echo "build-mirror-image: built $image ($key); seeded images:"
cat "$work/images.json"
