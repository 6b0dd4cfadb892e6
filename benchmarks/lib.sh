#!/usr/bin/env bash
# Shared by the benchmark scripts (sourced, not run).

# node_ip NAME NETWORK: the container's address on that podman network.
node_ip() {
  podman inspect -f "{{ (index .NetworkSettings.Networks \"$2\").IPAddress }}" "$1"
}

# wait_ssh IP: wait up to 60 s for sshd to accept connections.
wait_ssh() {
  for _ in $(seq 1 60); do
    if timeout 2 bash -c "exec 3<>/dev/tcp/$1/22" 2>/dev/null; then return 0; fi
    sleep 1
  done
}
