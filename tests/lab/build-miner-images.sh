#!/usr/bin/env bash
# Build the miner's images for the lab, FROM the lab's slim Debian base (build-base-image.sh),
# and with --push put them into a registry (lab.sh pushes to the lab mirror's, :5000).
#
#   build-miner-images.sh [--push HOST:PORT] [NAME...]     NAME: control_api graval postgresql
#                                                           redis nginx lab-chute (default: all)
#
# - control_api, graval: their own Containerfiles (control_api/, graval/), the package built
#   and installed in the image as a user installs it, from the index of this machine's pip
#   configuration (PIP_INDEX_URL, PIP_TRUSTED_HOST) with this machine's CA bundle (PIP_CERT:
#   TLS may be re-signed on the way out, as it is here). graval is built without the gpu
#   extra and with GRAVAL_STAND_IN=true baked in (build argument): the stand-in Miner.
# - postgresql, redis, nginx: tests/lab/images/<name>/, Debian 12's packages.
# - lab-chute: LAB ONLY, a stand-in chute (tests/lab/images/lab-chute/), tag lab-<content key>.
#
# Each image is cached by a content key (this script, its Containerfile and build context, the
# base image key, its build arguments), kept as a label: a current image is not rebuilt. Every
# image is started once before it is tagged. Tags: the package version (control_api, graval
# "-lab") or the Debian package version (+ and ~ as _). Results, read by the lab's roles:
# $CHUTES_LAB_DIR/miner-images.json (format in tests/lab/README.md, "Miner images").
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tests/lab/env.sh
source "$here/env.sh"

all=(control_api graval postgresql redis nginx lab-chute)
label=chutes-miner-lab.image-key
state="$CHUTES_LAB_DIR/miner-images.json"
base="${CHUTES_LAB_BASE_IMAGE:-localhost/chutes-miner-lab-base:bookworm}"
# A valid ss58 address (the well-known development key "Alice") for graval's start-up check.
dev_ss58=5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY

log() { printf 'build-miner-images: %s\n' "$*"; }
die() { printf 'build-miner-images: %s\n' "$*" >&2; exit 1; }

push_to=""
names=()
while (($#)); do
  case "$1" in
    --push) push_to="${2:?--push needs HOST:PORT}"; shift 2 ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *)
      [[ " ${all[*]} " == *" $1 "* ]] || die "unknown image '$1' (one of: ${all[*]})"
      names+=("$1")
      shift
      ;;
  esac
done
((${#names[@]})) || names=("${all[@]}")

mkdir -p "$CHUTES_LAB_DIR"
exec 8>"$CHUTES_LAB_DIR/miner-images.lock"
flock 8
"$here/build-base-image.sh" >/dev/null 8>&-
# This machine's pip configuration, for the builds of the Python packages.
pip_setting() { # environment name, config key
  local value="${!1:-}"
  [[ -n "$value" ]] || value="$(python3 -m pip config get "$2" 2>/dev/null || true)"
  printf '%s' "$value"
}
pip_index="$(pip_setting PIP_INDEX_URL global.index-url)"
pip_trusted="$(pip_setting PIP_TRUSTED_HOST global.trusted-host)"
pip_cert="$(pip_setting PIP_CERT global.cert)"
pip_cert="${pip_cert:-/etc/ssl/certs/ca-certificates.crt}"
[[ -r "$pip_cert" ]] || die "no CA bundle at $pip_cert (set PIP_CERT)"
base_key="$(podman image inspect --format '{{index .Labels "chutes-miner-lab.base-key"}}' "$base")"
work="$(mktemp -d /var/tmp/chutes-miner-images.XXXXXX)"
trap 'podman rm -f -t 1 chutes-miner-image-check >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

# state get NAME FIELD / state set NAME JSON-OBJECT (merged into the entry)
state() {
  python3 - "$state" "$@" <<'PY'
import json, pathlib, sys
path, op, name = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
try:
    data = json.loads(path.read_text())
except (FileNotFoundError, ValueError):
    data = {}
images = data.setdefault("images", {})
if op == "get":
    value = images.get(name, {}).get(sys.argv[4])
    print("" if value is None else value)
else:
    images.setdefault(name, {}).update(json.loads(sys.argv[4]))
    data["format"] = 1
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
PY
}

# The files of a Python package the image is built from: what git tracks or would add,
# without what the package's .containerignore leaves out.
package_files() { # dir
  git -C "$CHUTES_REPO" ls-files -co --exclude-standard -- "$1" | sed "s|^$1/||" |
    grep -v -E '^(tests|benchmarks|changelogs|k8s|build|dist)/|(^|/)\.|__pycache__|\.egg-info/' |
    while read -r f; do [[ -f "$CHUTES_REPO/$1/$f" ]] && printf '%s\n' "$f"; done | LC_ALL=C sort
}

# Sets: repo (registry path), containerfile, files (context files, relative to src), src, args.
describe() {
  files=()
  case "$1" in
    control_api | graval)
      src="$CHUTES_REPO/$1"
      mapfile -t files < <(package_files "$1")
      args=(--build-arg PIP_CERT=/src/host-ca.crt)
      [[ -z "$pip_index" ]] || args+=(--build-arg "PIP_INDEX_URL=$pip_index")
      [[ -z "$pip_trusted" ]] || args+=(--build-arg "PIP_TRUSTED_HOST=$pip_trusted")
      ;;
    *)
      src="$here/images/$1"
      mapfile -t files < <(cd "$src" && find . -type f ! -name Containerfile | LC_ALL=C sort)
      args=()
      ;;
  esac
  containerfile="$src/Containerfile"
  args+=(--build-arg "BASE_IMAGE=$base")
  case "$1" in
    control_api) repo=chutes-miner/control-api ;;
    graval)
      repo=chutes-miner/graval-bootstrap
      # The stand-in Miner is baked in (the API's bootstrap Jobs pass no such variable).
      args+=(--build-arg "BUILD_IMAGE=$base" --build-arg EXTRAS= --build-arg GRAVAL_STAND_IN=true)
      ;;
    *) repo="chutes-miner/$1" ;;
  esac
}

image_key() { # name
  (
    cat "$0" "$containerfile"
    printf '%s\n' "$1" "$base_key" "${args[@]}"
    for f in "${files[@]}"; do
      printf '%s\n' "$f"
      cat "$src/$f"
    done
  ) | sha256sum | cut -c1-12
}

pyproject_version() { # dir
  python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
    "$1/pyproject.toml"
}

debian_version() { # image package: the version as a tag (no epoch; + and ~ become _)
  podman run --rm --network none --entrypoint dpkg-query "$1" -W -f '${Version}' "$2" |
    sed -e 's/^[0-9]*://' -e 's/[+~]/_/g'
}

# Wait until `podman exec` of the arguments succeeds in the check container.
check_until() { # what command...
  local what="$1"
  shift
  for _ in $(seq 60); do
    podman exec chutes-miner-image-check "$@" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  podman logs chutes-miner-image-check 2>&1 | tail -20 >&2
  die "the image did not come up: $what"
}

# Start the new image once, as the lab will, and return its tag.
check_and_tag() { # name image
  local name="$1" image="$2" out
  podman rm -f -t 1 chutes-miner-image-check >/dev/null 2>&1 || true
  case "$name" in
    control_api)
      out="$(podman run --rm --network none "$image" --help)"
      [[ "$out" == *registry-auth* && "$out" == *scheduler* ]] || die "control_api --help: $out"
      pyproject_version "$CHUTES_REPO/control_api"
      ;;
    graval)
      podman run -d --name chutes-miner-image-check --network none \
        -e MINER_HOTKEY_SS58="$dev_ss58" -e VALIDATOR_WHITELIST="$dev_ss58" \
        -e EXPECTED_GPU_COUNT=1 "$image" >/dev/null 8>&-
      check_until "graval /ping" python -c \
        'import urllib.request; assert urllib.request.urlopen("http://127.0.0.1:8000/ping").read() == b"pong"'
      # podman's log file may trail the process by a moment: look for the line a few times.
      for _ in $(seq 60); do
        podman logs chutes-miner-image-check 2>&1 | grep -q 'GPU STAND-IN' && break
        sleep 0.5
      done
      podman logs chutes-miner-image-check 2>&1 | grep -q 'GPU STAND-IN' || die "graval: no stand-in log line"
      echo "$(pyproject_version "$CHUTES_REPO/graval")-lab"
      ;;
    postgresql)
      podman run -d --name chutes-miner-image-check --network none -e POSTGRES_PASSWORD=check \
        -e POSTGRES_USER=miner "$image" >/dev/null 8>&-
      # shellcheck disable=SC2016 # expanded in the container
      check_until "postgresql select 1" sh -c \
        '[ "$(PGPASSWORD=check psql -h 127.0.0.1 -U miner -d miner -tAc "select 1")" = 1 ]'
      debian_version "$image" postgresql-15
      ;;
    redis)
      podman run -d --name chutes-miner-image-check --network none "$image" >/dev/null 8>&-
      # shellcheck disable=SC2016 # expanded in the container
      check_until "redis PING" sh -c '[ "$(redis-cli ping)" = PONG ]'
      debian_version "$image" redis-server
      ;;
    nginx)
      out="$(podman run --rm --network none --entrypoint nginx "$image" -V 2>&1)"
      [[ "$out" == *http_auth_request_module* ]] || die "nginx has no auth_request module: $out"
      # The CA bundle the registry proxy verifies validators' registries with (its default).
      podman run --rm --network none --entrypoint test "$image" -s /etc/ssl/certs/ca-certificates.crt ||
        die "nginx image has no CA bundle at /etc/ssl/certs/ca-certificates.crt"
      podman run -d --name chutes-miner-image-check --network none "$image" >/dev/null 8>&-
      check_until "nginx on 8080" bash -c \
        'exec 3<>/dev/tcp/127.0.0.1/8080; printf "GET / HTTP/1.0\r\n\r\n" >&3; grep -q "lab nginx" <&3'
      debian_version "$image" nginx
      ;;
    lab-chute)
      podman run -d --name chutes-miner-image-check --network none "$image" \
        run app:chute --port 8000 --miner-ss58 "$dev_ss58" --validator-ss58 "$dev_ss58" >/dev/null 8>&-
      check_until "the stand-in chute's /_alive on 8001" python3 -c \
        'import urllib.request; assert b"alive" in urllib.request.urlopen("http://127.0.0.1:8001/_alive").read()'
      echo "lab-$key" # the tag changes with the content: nodes pull a new build
      ;;
  esac
  podman rm -f -t 1 chutes-miner-image-check >/dev/null 2>&1 || true
}

build() { # name
  local name="$1" key local_ref ctx tag start current
  describe "$name"
  key="$(image_key "$name")"
  current="$(state get "$name" local)"
  if [[ -n "$current" ]] && podman image exists "$current" &&
    [[ "$(podman image inspect --format "{{index .Labels \"$label\"}}" "$current")" == "$key" ]]; then
    log "$current is current ($key)"
    return 0
  fi
  start=$(date +%s)
  ctx="$work/$name"
  mkdir -p "$ctx"
  if ((${#files[@]})); then
    tar -C "$src" -cf - "${files[@]}" | tar -C "$ctx" -xf -
  fi
  if [[ "$name" == control_api || "$name" == graval ]]; then
    cp "$pip_cert" "$ctx/host-ca.crt"
  fi
  log "$name: podman build (key $key)"
  podman build -q --network podman -f "$containerfile" "${args[@]}" \
    --label "$label=$key" --label "chutes-miner-lab.image=$name" \
    -t "localhost/$repo:build" "$ctx" >/dev/null 8>&-
  tag="$(check_and_tag "$name" "localhost/$repo:build")"
  [[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "$name: bad tag '$tag'"
  local_ref="localhost/$repo:$tag"
  podman tag "localhost/$repo:build" "$local_ref"
  podman untag "localhost/$repo:build" "localhost/$repo:build"
  # Housekeeping only: an image still used by a build container left by an interrupted run
  # stays, and the build goes on.
  podman image prune -f --filter "label=chutes-miner-lab.image=$name" >/dev/null 2>&1 ||
    log "$name: old images still in use were kept"
  state set "$name" "$(printf '{"repository": "%s", "tag": "%s", "local": "%s", "key": "%s", "size_bytes": %s, "build_s": %s, "digest": null}' \
    "$repo" "$tag" "$local_ref" "$key" "$(podman image inspect --format '{{.Size}}' "$local_ref")" \
    "$(($(date +%s) - start))")"
  log "built $local_ref in $(($(date +%s) - start)) s"
}

# Push when the registry does not serve the recorded digest under the tag.
push() { # name
  local name="$1" repo tag local_ref digest served
  repo="$(state get "$name" repository)"
  tag="$(state get "$name" tag)"
  local_ref="$(state get "$name" local)"
  digest="$(state get "$name" digest)"
  if [[ -n "$digest" ]]; then
    served="$(curl -fsS -I -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
      -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
      "http://$push_to/v2/$repo/manifests/$tag" 2>/dev/null |
      tr -d '\r' | awk 'tolower($1) == "docker-content-digest:" {print $2}')" || served=""
    if [[ "$served" == "$digest" ]]; then
      return 0
    fi
  fi
  podman push -q --tls-verify=false --digestfile "$work/digest" "$local_ref" \
    "docker://$push_to/$repo:$tag" 8>&-
  state set "$name" "{\"digest\": \"$(cat "$work/digest")\", \"registry\": \"$push_to\"}"
  log "pushed $push_to/$repo:$tag@$(cat "$work/digest")"
}

for name in "${names[@]}"; do
  build "$name"
done
if [[ -n "$push_to" ]]; then
  for name in "${names[@]}"; do
    push "$name"
  done
fi
