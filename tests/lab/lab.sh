#!/usr/bin/env bash
# The local lab: a mirror host plus cpu-0, gpu-0, gpu-1 on the podman network
# chutes-lab, driven by the real playbooks with inventories/lab.
#   lab.sh up         host setup, images, nodes, playbooks/site.yml (+ summary)
#   lab.sh nodes      the containers (idempotent), miner images in the registry; pytest's lab_nodes
#   lab.sh smoke      a busybox pod Running on every node, pinging the other nodes' pods
#   lab.sh down       remove every container and network the lab created, and its temp files
#   lab.sh status     what is running, and the mirror's services
#   lab.sh dns-audit  names the nodes looked up; non-zero if one is blocked
#   lab.sh add-node   add-node end to end with the real CLI and a stand-in validator (after up)
#   lab.sh is-up      exit 0 when any lab container exists (for fixtures)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tests/lab/env.sh
source "$here/env.sh"

network=chutes-lab
subnet=10.89.77.0/24
gateway=10.89.77.1
label=chutes-miner-lab=lab
mirror_name=lab-mirror
mirror_ip=10.89.77.2
mirror_image="${CHUTES_LAB_MIRROR_IMAGE:-localhost/chutes-miner-lab-mirror:bookworm}"
declare -A node_ips=([cpu-0]=10.89.77.10 [gpu-0]=10.89.77.11 [gpu-1]=10.89.77.12)
nodes=(cpu-0 gpu-0 gpu-1)
# What a node needs to run a kubelet: each line that starts with "--" is one flag
# (given after start_container's own, so its --systemd=false wins).
mapfile -t kubelet_node_args < <(grep -o '^--[^[:space:]]*' "$here/kubelet-node.args")
state_dir="$CHUTES_LAB_DIR/lab"
ssh_opts=(-i "$CHUTES_LAB_KEY" -o BatchMode=yes -o ConnectTimeout=3 -o LogLevel=ERROR
  -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null)

log() { printf 'lab: %s\n' "$*"; }

# One lab operation at a time (pytest workers may race). podman calls that leave
# processes behind (conmon) run with 9>&- so the lock dies with this script.
lock() {
  mkdir -p "$CHUTES_LAB_DIR"
  exec 9>"$CHUTES_LAB_DIR/lab.lock"
  flock 9
}

# shellcheck disable=SC2029 # the command is meant to run on the node
on_node() { ssh "${ssh_opts[@]}" "root@${node_ips[$1]}" "${@:2}"; }

# Running for real: podman's record says so and the container's process exists.
running() {
  local state
  state="$(podman inspect --format '{{.State.Running}} {{.State.Pid}}' "$1" 2>/dev/null)" || return 1
  [[ "$state" == "true "* && "${state#true }" -gt 0 ]] && kill -0 "${state#true }" 2>/dev/null
}

# Podman's record says "running" but the process is gone: it was killed from outside podman
# (a CI job or a session torn down with everything in it). Such a container can be neither
# exec'd into nor started; it must be removed and created again.
stale() {
  [[ "$(podman inspect --format '{{.State.Running}}' "$1" 2>/dev/null)" == true ]] && ! running "$1"
}

start_container() { # name ip image [extra podman args...]
  local name="$1" ip="$2" image="$3" spec
  shift 3
  # The image and the extra flags, as a label: a container started from another
  # image or with other flags is recreated (with its anonymous volumes).
  spec="$( (podman image inspect --format '{{.Id}}' "$image"; printf '%s\n' "$@") | sha256sum | cut -c1-12)"
  if stale "$name"; then
    log "$name is recorded as running but its process is gone: recreating it"
    podman rm -f -v -t 2 "$name" >/dev/null 2>&1 || true
  fi
  if podman container exists "$name" &&
    [[ "$(podman inspect --format '{{index .Config.Labels "chutes-miner-lab.spec"}}' "$name")" != "$spec" ]]; then
    log "$name runs an older $image or other settings: recreating it"
    podman rm -f -v -t 2 "$name" >/dev/null
  fi
  if running "$name"; then
    return 0
  fi
  if podman container exists "$name"; then
    podman start "$name" >/dev/null 9>&-
    return 0
  fi
  # A fixed MAC per address: a recreated container keeps its neighbours' ARP entries valid.
  local octets mac
  IFS=. read -ra octets <<<"$ip"
  mac="$(printf '02:42:%02x:%02x:%02x:%02x' "${octets[@]}")"
  podman run -d --name "$name" --hostname "$name" --network "$network" --ip "$ip" --mac-address "$mac" \
    --privileged --systemd=always --label "$label" --label "chutes-miner-lab.spec=$spec" --stop-timeout 2 \
    -v "$CHUTES_LAB_KEY.pub:/root/.ssh/authorized_keys:ro" "$@" "$image" >/dev/null 9>&-
  log "started $name ($ip)"
}

wait_for() { # description tries command...
  local what="$1" tries="$2"
  shift 2
  for ((i = 0; i < tries; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "lab: timed out waiting for $what" >&2
  return 1
}

mirror_ready() {
  curl -fsS -o /dev/null "http://$mirror_ip:5000/v2/" &&
    curl -fsS -o /dev/null "http://$mirror_ip:8081/simple/" &&
    curl -fsS -o /dev/null "http://$mirror_ip:8082/" &&
    curl -sS -o /dev/null "http://$mirror_ip:3142/" &&
    podman exec "$mirror_name" sh -c 'for u in apt-cacher-ng docker-registry dnsmasq chrony lab-pypi lab-release; do systemctl is-active -q $u || exit 1; done'
}

cmd_nodes() {
  lock
  "$here/setup-host.sh"
  "$here/build-image.sh"
  "$here/build-mirror-image.sh" >/dev/null
  mkdir -p "$state_dir"
  if ! podman network exists "$network"; then
    podman network create --subnet "$subnet" --gateway "$gateway" --label "$label" "$network" >/dev/null
    log "created network $network ($subnet)"
  fi
  # The binary repository: the release tree of tests/lab/k8s/build.sh, read-only
  # (never copied into the image). Without a build the mirror serves an empty tree.
  local mirror_args=()
  if [[ -n "${CHUTES_K8S_DIR:-}" && -d "$CHUTES_K8S_DIR/release" ]]; then
    mirror_args+=(--volume "$CHUTES_K8S_DIR/release:/srv/release:ro")
  fi
  start_container "$mirror_name" "$mirror_ip" "$mirror_image" "${mirror_args[@]}"
  for n in "${nodes[@]}"; do
    start_container "$n" "${node_ips[$n]}" "$CHUTES_LAB_IMAGE" --dns "$mirror_ip" "${kubelet_node_args[@]}"
  done
  wait_for "the mirror services" 120 mirror_ready
  # The miner's own images (cached; pushed when the registry lacks the recorded digest).
  "$here/build-miner-images.sh" --push "$mirror_ip:5000" >/dev/null 9>&-
  local pids=()
  for n in "${nodes[@]}"; do
    wait_for "sshd on $n" 120 on_node "$n" true
    # The image carries no apt lists (docs/testing.md §6): fetch them once per node.
    on_node "$n" 'ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1 || apt-get update -qq --error-on=any' &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  log "nodes up: $mirror_name=$mirror_ip $(for n in "${nodes[@]}"; do printf '%s=%s ' "$n" "${node_ips[$n]}"; done)"
}

cmd_up() {
  local start end rc
  start=$(date +%s)
  # The binary repository the nodes install Kubernetes from (cached; a no-op when current).
  CHUTES_K8S_DIR="$("$here/k8s/build.sh" | tail -1)"
  export CHUTES_K8S_DIR
  cmd_nodes
  exec 9>&- # release the lock: the playbook run is the operator's
  mkdir -p "$state_dir"
  # The lab miner's hotkey (inventories/lab/group_vars/all/components.yml), made once.
  log "miner hotkey $(python "$here/make-hotkey.py" "$state_dir/hotkey.json")"
  log "ansible-playbook -i inventories/lab playbooks/site.yml (log: $state_dir/site.log)"
  cd "$CHUTES_REPO"
  set +e
  # Full task output goes to site.log; the terminal shows changed or failed
  # tasks, the recap and the summary table (set LAB_VERBOSE=1 for everything).
  ANSIBLE_LOG_PATH="$state_dir/site.log" ANSIBLE_DISPLAY_SKIPPED_HOSTS=false \
    ANSIBLE_DISPLAY_OK_HOSTS="${LAB_VERBOSE:-false}" \
    ansible-playbook -i inventories/lab playbooks/site.yml --skip-tags chutes_summary "$@"
  rc=$?
  if ((rc == 0)); then
    cmd_smoke || rc=$?
  fi
  if ((rc == 0)); then
    ANSIBLE_LOG_PATH="$state_dir/site.log" ANSIBLE_DISPLAY_SKIPPED_HOSTS=false \
      ansible-playbook -i inventories/lab playbooks/summary.yml || rc=$?
  fi
  set -e
  end=$(date +%s)
  log "site.yml rc=$rc in $((end - start)) s (nodes + playbooks)"
  return "$rc"
}

# A pod on every node from the lab's pinned busybox image (pulled through the
# nodes' certs.d mirror configuration), each pinging the others' pod addresses
# across nodes. Idempotent: pods that already run are left alone.
smoke_ns=lab-smoke
smoke_image=docker.io/library/busybox:1.35.0
kubeconfig=/etc/chutes-miner/kubeconfig/admin.conf # k8s_binaries_kubeconfig (the primary's)

smoke_manifest() {
  local n
  printf 'apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n' "$smoke_ns"
  for n in "${nodes[@]}"; do
    cat <<YAML
---
apiVersion: v1
kind: Pod
metadata: {name: smoke-$n, namespace: $smoke_ns, labels: {app: lab-smoke}}
spec:
  nodeSelector: {kubernetes.io/hostname: $n}
  terminationGracePeriodSeconds: 1
  containers:
    - name: app
      image: $smoke_image
      imagePullPolicy: IfNotPresent
      command: ["/bin/sh", "-c", "echo smoke pod on \$(hostname); exec sleep 2147483647"]
YAML
  done
}

cmd_smoke() {
  local kc="kubectl --kubeconfig $kubeconfig" out n ip
  on_node cpu-0 "test -r $kubeconfig" || { echo "lab: no kubeconfig on cpu-0 ($kubeconfig): is Kubernetes installed?" >&2; return 1; }
  # A pod spec cannot change in place: when the manifest changed, recreate the pods.
  if ! out="$(smoke_manifest | on_node cpu-0 "$kc apply -f -" 2>&1)"; then
    on_node cpu-0 "$kc -n $smoke_ns delete pod -l app=lab-smoke --wait=true" >/dev/null
    out="$(smoke_manifest | on_node cpu-0 "$kc apply -f -")"
  fi
  grep -v ' unchanged$' <<<"$out" | sed 's/^/lab: smoke: /' || true
  if ! on_node cpu-0 "$kc -n $smoke_ns wait --for=condition=Ready pod -l app=lab-smoke --timeout=180s" >/dev/null; then
    on_node cpu-0 "$kc -n $smoke_ns get pods -o wide; $kc -n $smoke_ns get events --sort-by=.lastTimestamp | tail -20" >&2
    echo "lab: smoke pods did not become Ready" >&2
    return 1
  fi
  local -A pod_ips=()
  while read -r n ip; do pod_ips[$n]="$ip"; done < <(on_node cpu-0 \
    "$kc -n $smoke_ns get pods -l app=lab-smoke -o jsonpath='{range .items[*]}{.spec.nodeName} {.status.podIP}{\"\\n\"}{end}'")
  local failed=0 peer reach
  printf '%-8s %-16s %-13s %s\n' NODE POD "POD IP" "PINGS OTHER NODES' PODS"
  for n in "${nodes[@]}"; do
    reach=()
    for peer in "${nodes[@]}"; do
      [[ "$peer" == "$n" ]] && continue
      if on_node cpu-0 "$kc -n $smoke_ns exec smoke-$n -- ping -c 1 -W 3 ${pod_ips[$peer]:-none}" >/dev/null 2>&1; then
        reach+=("$peer:ok")
      else
        reach+=("$peer:FAILED")
        failed=1
      fi
    done
    printf '%-8s %-16s %-13s %s\n' "$n" "smoke-$n" "${pod_ips[$n]:--}" "${reach[*]}"
  done
  ((failed == 0)) || { echo "lab: pods on different nodes cannot reach each other" >&2; return 1; }
}

cmd_down() {
  lock
  local ids
  ids="$(podman ps -aq --filter "label=$label")"
  if [[ -n "$ids" ]]; then
    # shellcheck disable=SC2086 # one id per word
    podman rm -f -v -t 2 $ids 2>&1 >/dev/null | grep -v 'resorting to SIGKILL' >&2 || true
    log "removed containers: $(echo "$ids" | wc -l)"
  fi
  if podman network exists "$network"; then
    podman network rm -f "$network" >/dev/null
    log "removed network $network"
  fi
  rm -rf "$state_dir" "$CHUTES_LAB_DIR/pytest-lab.json"
}

cmd_status() {
  podman ps -a --filter "label=$label" --format '{{.Names}}\t{{.Status}}\t{{.Networks}}'
  if podman network exists "$network"; then log "network $network ($subnet)"; else log "network $network absent"; fi
  if running "$mirror_name"; then
    local s
    for s in "apt-cacher-ng http://$mirror_ip:3142/debian/" "registry http://$mirror_ip:5000/v2/_catalog" \
      "pypi http://$mirror_ip:8081/simple/" "binaries http://$mirror_ip:8082/kubernetes/"; do
      printf '%-14s %s %s\n' "${s%% *}" "${s#* }" \
        "$(curl -s -o /dev/null -w '%{http_code}' "${s#* }" || true)"
    done
    podman exec "$mirror_name" systemctl is-active dnsmasq chrony | paste -sd' ' | sed 's/^/dnsmasq chrony: /'
  fi
}

cmd_dns_audit() {
  running "$mirror_name" || { echo "lab: $mirror_name is not running" >&2; return 2; }
  local names blocked=() name b
  # dnsmasq logs "query[A] <name> from <client>"; keep lookups made by lab nodes.
  names="$(podman exec "$mirror_name" cat /var/log/dnsmasq/queries.log 2>/dev/null |
    awk '$5 ~ /^query\[/ && $8 ~ /^10\.89\.77\./ {print tolower($6)}' | sort | uniq -c | sort -k2)"
  echo "lab: names looked up by the lab nodes (count name):"
  echo "${names:-  (none)}"
  while read -r _ name; do
    [[ -n "${name:-}" ]] || continue
    while read -r b; do
      [[ -z "$b" || "$b" == \#* ]] && continue
      if [[ "$name" == "$b" || "$name" == *".$b" ]]; then blocked+=("$name"); fi
    done <"$here/blocked-hosts.txt"
  done <<<"$names"
  if ((${#blocked[@]})); then
    echo "lab: BLOCKED hosts were looked up: ${blocked[*]}" >&2
    return 1
  fi
  echo "lab: no blocked host was looked up"
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  nodes) cmd_nodes ;;
  smoke) cmd_smoke ;;
  down) cmd_down ;;
  status) cmd_status ;;
  dns-audit) cmd_dns_audit ;;
  add-node) shift; python "$here/add-node-e2e.py" "$@" ;;
  is-up) [[ -n "$(podman ps -aq --filter "label=$label")" ]] ;;
  *) sed -n '2,11p' "$0" >&2; exit 2 ;;
esac
