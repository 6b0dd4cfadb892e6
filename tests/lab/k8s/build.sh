#!/usr/bin/env bash
# Build the lab's Kubernetes from Go modules, no registry and no prebuilt
# download: kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
# kube-proxy, kubectl, etcd + etcdctl, containerd + shim + ctr, runc, the
# CNI plugins and CoreDNS, at the versions pinned in versions.env.
#
#   build.sh              build what is missing; print the output directory last
#   build.sh --print-dir  print the output directory, build nothing
#
# Output (keyed by this script, versions.env and the Go version; reused when
# complete): /var/cache/chutes-miner-lab/k8s/v<kubernetes>-<key>/
#   bin/       every binary, bin/cni/ the CNI plugins
#   release/   the same files laid out like the upstream download trees that
#              Chinese mirrors re-host (see tests/lab/README.md), with .sha256
#   build.json versions, per-component build seconds, sizes, the parts used
#
# Each component is built once per part key (its recipe below, the versions it
# names, the Go version) into /var/cache/chutes-miner-lab/k8s/parts/<component>-<key>/
# and hard-linked into the output: a change to one component (a CoreDNS bump)
# gives a new output directory but rebuilds only that component.
#
# Each component is built in its own generated wrapper module: k8s.io/kubernetes
# maps its staging modules to ./staging with replace directives that a
# dependency's go.mod cannot carry, and etcd, containerd and runc would move
# each other's dependencies under minimal version selection if they shared one.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tests/lab/k8s/versions.env
source "$here/versions.env"

cache_root="${CHUTES_K8S_CACHE:-/var/cache/chutes-miner-lab/k8s}"
key="$( (cat "$0" "$here/versions.env"; go env GOVERSION GOARCH) | sha256sum | cut -c1-12)"
out="$cache_root/v${KUBERNETES_VERSION}-${key}"

if [[ "${1:-}" == --print-dir ]]; then
  echo "$out"
  exit 0
fi
if [[ -f "$out/build.json" ]]; then
  echo "$out"
  exit 0
fi

log() { printf 'k8s-build: %s\n' "$*" >&2; }

mkdir -p "$cache_root"
exec 8>"$cache_root/.build.lock"
flock 8 # one build at a time; a waiter finds the finished directory below
if [[ -f "$out/build.json" ]]; then
  echo "$out"
  exit 0
fi

# runc's seccomp support links libseccomp (cgo).
if ! dpkg-query -W -f='${Status}' libseccomp-dev 2>/dev/null | grep -q 'install ok installed'; then
  log "installing libseccomp-dev (runc's seccomp support)"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends libseccomp-dev pkg-config >/dev/null
fi

src="$cache_root/src"
stage="$out.partial"
rm -rf "$stage"
mkdir -p "$stage/bin/cni" "$src"
timings=()

# wrapper NAME: a fresh module directory $src/NAME-<part key>, entered.
wrapper() {
  local dir="$src/$1-$pkey"
  mkdir -p "$dir"
  cd "$dir"
  [[ -f go.mod ]] || go mod init "example.invalid/chutes-lab-build/$1" >/dev/null 2>&1
}

# deps VERSION PKG...: require each package's module at VERSION (as tools, so
# `go mod tidy` keeps every module they import), once per wrapper.
deps() {
  local version="$1" p
  shift
  [[ -f .deps-done ]] && return 0
  for p in "$@"; do go get -tool "$p@$version" >/dev/null; done
  go mod tidy >/dev/null 2>&1
  touch .deps-done
}

# part_key COMPONENT: what its binaries depend on: its recipe (build_COMPONENT
# and the helpers it calls), the *_VERSION values that recipe names, the Go
# toolchain. A change elsewhere in this script or in versions.env reuses the part.
part_key() {
  local f="build_$1" v
  {
    declare -f wrapper deps "$f"
    for v in $(declare -f "$f" | grep -o '\b[A-Z_]*_VERSION\b' | sort -u); do echo "$v=${!v}"; done
    go env GOVERSION GOARCH
  } | sha256sum | cut -c1-12
}

timed() { # name command...
  local t0=$SECONDS
  "${@:2}"
  timings+=("\"$1\": $((SECONDS - t0))")
  log "$1 built in $((SECONDS - t0)) s"
}

build_kubernetes() {
  local k="$KUBERNETES_VERSION" minor staging gomod m
  minor="$(cut -d. -f2 <<<"$k")"
  staging="0.${k#1.}" # k8s.io/api etc. are published as v0.<minor>.<patch>
  wrapper kubernetes
  if [[ ! -f .deps-done ]]; then
    gomod="$(go mod download -json "k8s.io/kubernetes@v$k" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
    # Every staging module, replaced by its published version.
    sed -n 's#^\s*\(k8s\.io/[a-z0-9-]*\) => \./staging/.*#\1#p' "$gomod" | while read -r m; do
      go mod edit -replace="$m=$m@v$staging"
    done
    # GODEBUG defaults come only from the main module: copy go and godebug.
    go mod edit -go="$(sed -n 's/^go //p' "$gomod")"
    sed -n 's/^godebug //p' "$gomod" | while read -r g; do go mod edit -godebug="$g"; done
    for c in kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl kubelet; do
      go get -tool "k8s.io/kubernetes/cmd/$c@v$k" >/dev/null 2>&1
    done
    go mod tidy >/dev/null 2>&1
    touch .deps-done
  fi
  # Stamp both version packages, or binaries say v0.0.0-master.
  local ld="-s -w" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=v$k -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
    ld+=" -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  # Upstream's flags: static except kubelet (cgo), tags selinux,notest.
  CGO_ENABLED=0 go build -trimpath -tags selinux,notest -ldflags "$ld" -o "$dest/bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl
  go build -trimpath -tags selinux,notest -ldflags "$ld" -o "$dest/bin/" k8s.io/kubernetes/cmd/kubelet
}

build_etcd() {
  wrapper etcd
  deps "v$ETCD_VERSION" go.etcd.io/etcd/server/v3 go.etcd.io/etcd/etcdctl/v3
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$dest/bin/etcd" go.etcd.io/etcd/server/v3
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$dest/bin/etcdctl" go.etcd.io/etcd/etcdctl/v3
}

build_containerd() {
  local mod=github.com/containerd/containerd/v2
  wrapper containerd
  deps "v$CONTAINERD_VERSION" "$mod/cmd/containerd" "$mod/cmd/containerd-shim-runc-v2" "$mod/cmd/ctr"
  local ld="-s -w -X $mod/version.Version=v$CONTAINERD_VERSION -X $mod/version.Revision=chutes-lab"
  # The snapshotters the lab never uses are left out, as kind does.
  CGO_ENABLED=0 go build -trimpath -tags "no_aufs no_zfs no_btrfs no_devmapper" -ldflags "$ld" \
    -o "$dest/bin/" "$mod/cmd/containerd" "$mod/cmd/containerd-shim-runc-v2" "$mod/cmd/ctr"
}

build_runc() {
  wrapper runc
  deps "v$RUNC_VERSION" github.com/opencontainers/runc
  CGO_ENABLED=1 go build -trimpath -tags seccomp -ldflags "-s -w -X main.version=$RUNC_VERSION" \
    -o "$dest/bin/runc" github.com/opencontainers/runc
}

build_coredns() {
  local mod=github.com/coredns/coredns commit
  wrapper coredns
  deps "v$COREDNS_VERSION" "$mod"
  # Upstream's flags; GitCommit as its Makefile stamps it (git describe --always),
  # from the tag the module proxy recorded: `coredns -version` names the source.
  commit="$(go list -m -json "$mod@v$COREDNS_VERSION" | sed -n 's/.*"Hash": "\([0-9a-f]\{7\}\).*/\1/p')"
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X $mod/coremain.GitCommit=${commit:-v$COREDNS_VERSION}" \
    -o "$dest/bin/coredns" "$mod"
}

build_cni() {
  local mod=github.com/containernetworking/plugins
  wrapper cni
  deps "v$CNI_PLUGINS_VERSION" "$mod/plugins/main/bridge" "$mod/plugins/main/loopback" \
    "$mod/plugins/ipam/host-local" "$mod/plugins/meta/portmap"
  CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X $mod/pkg/utils/buildversion.BuildVersion=v$CNI_PLUGINS_VERSION" \
    -o "$dest/bin/cni/" "$mod/plugins/main/bridge" "$mod/plugins/main/loopback" \
    "$mod/plugins/ipam/host-local" "$mod/plugins/meta/portmap"
}

log "building into $out (Kubernetes v$KUBERNETES_VERSION; a cold build takes tens of minutes on 2 cores)"
t_all=$SECONDS
components=(kubernetes etcd containerd runc cni coredns)
parts_root="$cache_root/parts"
declare -A parts=()
for c in "${components[@]}"; do
  pkey="$(part_key "$c")"
  part="$parts_root/$c-$pkey"
  parts[$c]="$c-$pkey"
  if [[ -d "$part" ]]; then
    log "$c: reusing $part"
    timings+=("\"$c\": 0")
  else
    dest="$part.partial"
    rm -rf "$dest"
    mkdir -p "$dest/bin/cni"
    timed "$c" "build_$c"
    mv "$dest" "$part"
  fi
  cp -al "$part/." "$stage/" # hard links: an output costs only its release tarballs
done

# The release tree: Kubernetes as dl.k8s.io lays it out, the rest as GitHub
# release assets under a files/ prefix (the form GitHub prefix mirrors use).
rel="$stage/release"
kdir="$rel/kubernetes/v$KUBERNETES_VERSION/bin/linux/amd64"
mkdir -p "$kdir"
for b in kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl kubelet; do
  ln "$stage/bin/$b" "$kdir/$b"
  sha256sum "$kdir/$b" | cut -d' ' -f1 >"$kdir/$b.sha256"
done
gh="$rel/files/github.com"
asset() { # dir file: write file.sha256 as "<hex>  <file>"
  (cd "$1" && sha256sum "$2" >"$2.sha256")
}
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
tar_opts=(--owner=0 --group=0 --numeric-owner --mtime=@0 --sort=name)

d="$gh/etcd-io/etcd/releases/download/v$ETCD_VERSION"
n="etcd-v$ETCD_VERSION-linux-amd64"
mkdir -p "$d" "$tmp/$n"
cp "$stage/bin/etcd" "$stage/bin/etcdctl" "$tmp/$n/"
tar -C "$tmp" "${tar_opts[@]}" -czf "$d/$n.tar.gz" "$n"
asset "$d" "$n.tar.gz"

d="$gh/containerd/containerd/releases/download/v$CONTAINERD_VERSION"
n="containerd-$CONTAINERD_VERSION-linux-amd64.tar.gz"
mkdir -p "$d" "$tmp/containerd/bin"
cp "$stage/bin/containerd" "$stage/bin/containerd-shim-runc-v2" "$stage/bin/ctr" "$tmp/containerd/bin/"
tar -C "$tmp/containerd" "${tar_opts[@]}" -czf "$d/$n" bin
asset "$d" "$n"

d="$gh/opencontainers/runc/releases/download/v$RUNC_VERSION"
mkdir -p "$d"
cp "$stage/bin/runc" "$d/runc.amd64"
asset "$d" runc.amd64

d="$gh/containernetworking/plugins/releases/download/v$CNI_PLUGINS_VERSION"
n="cni-plugins-linux-amd64-v$CNI_PLUGINS_VERSION.tgz"
mkdir -p "$d"
tar -C "$stage/bin/cni" "${tar_opts[@]}" -czf "$d/$n" .
asset "$d" "$n"

{
  printf '{\n  "kubernetes": "%s", "etcd": "%s", "containerd": "%s", "runc": "%s", "cni_plugins": "%s", "coredns": "%s",\n' \
    "$KUBERNETES_VERSION" "$ETCD_VERSION" "$CONTAINERD_VERSION" "$RUNC_VERSION" "$CNI_PLUGINS_VERSION" "$COREDNS_VERSION"
  printf '  "go": "%s", "key": "%s", "total_seconds": %d,\n' "$(go env GOVERSION)" "$key" "$((SECONDS - t_all))"
  printf '  "seconds": {%s},\n' "$(IFS=,; echo "${timings[*]}")"
  printf '  "parts": {%s},\n' "$(for c in "${components[@]}"; do printf '"%s": "%s",' "$c" "${parts[$c]}"; done | sed 's/,$//')"
  printf '  "bin_megabytes": %d\n}\n' "$(du -sm "$stage/bin" | cut -f1)"
} >"$stage/build.json"
rm -rf "$out"
mv "$stage" "$out"
# Older keyed outputs go after a day (a tree or clone one commit behind, a CI run,
# a running lab mirror may still use one), then every part and wrapper module no
# remaining output names, and what an interrupted build left.
find "$cache_root" -mindepth 1 -maxdepth 1 -name 'v*' ! -path "$out" -mmin +1440 -exec rm -rf {} +
find "$cache_root" -mindepth 1 -maxdepth 1 -name 'v*.partial' -exec rm -rf {} +
keep="$(cat "$cache_root"/v*/build.json 2>/dev/null | grep -o '"[a-z]*-[0-9a-f]\{12\}"' | tr -d '"' | sort -u)"
for d in "$parts_root"/* "$src"/*; do
  [[ -e "$d" ]] || continue
  grep -qxF "$(basename "$d")" <<<"$keep" || rm -rf "$d"
done
log "done in $((SECONDS - t_all)) s: $(tr -d '\n' <"$out/build.json")"
echo "$out"
