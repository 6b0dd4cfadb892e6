#!/usr/bin/env bash
# What the registry proxy tests run, from Debian's packages: nginx (the proxy itself),
# docker-registry (two registries standing in for two validators) and dnsmasq (a resolver on
# 127.0.0.1 standing in for the cluster DNS). Installs what is missing and starts nothing: the
# tests run their own instances on free ports. Idempotent and quiet when all is in place;
# `make pytest` calls it.
set -euo pipefail

packages=(nginx docker-registry dnsmasq-base)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
((${#missing[@]})) || exit 0

echo "registry-proxy: installing ${missing[*]}"
# The nginx and docker-registry packages start their system services on install (port 80 and
# 5000). Nothing here needs them: without a policy-rc.d, one that refuses starts is in place
# for the install only.
policy=/usr/sbin/policy-rc.d
if [[ ! -e "$policy" ]]; then
  trap 'rm -f "$policy"' EXIT
  printf '#!/bin/sh\n# chutes.miner tests/registry_proxy/setup.sh, during an install only\nexit 101\n' >"$policy"
  chmod 0755 "$policy"
fi
apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
