# Copyright: (c) 2026, chutes.miner developers
# MIT License (see LICENSE in the collection root)
"""Filter ``chutes.miner.busy_ports``: required ports held by a process that is not allowed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

DOCUMENTATION = r"""
name: busy_ports
author: chutes.miner developers (!UNKNOWN)
version_added: 0.1.0
short_description: Ports held by a process that is not allowed to hold them
description:
  - Used by C(chutes.miner.preflight). Compares the listening sockets reported by
    C(community.general.listen_ports_facts) with the ports the cluster needs.
  - A socket is not a problem when its process is in O(allowed) (the cluster itself, on a
    rerun), or when it is a UDP socket without a process (a kernel socket such as WireGuard's).
  - A port listening on both IPv4 and IPv6 is reported once.
options:
  _input:
    description: >-
      C({tcp: tcp_listen, udp: udp_listen}) from C(community.general.listen_ports_facts).
    type: dict
    required: true
  ports:
    description: Required ports as C(<port>/<tcp|udp>).
    type: list
    elements: str
    required: true
  allowed:
    description: Process names that may hold them.
    type: list
    elements: str
    required: true
  pod_pids:
    description: >-
      Process ids found in a Kubernetes pod's cgroup (C(kubepods)): the cluster's own
      workloads on a rerun, such as the registry proxy's host-network nginx on
      chutes_registry_port. A process of the same name outside a pod is still reported.
    type: list
    elements: int
    default: []
"""

EXAMPLES = r"""
- name: Read the listening sockets
  community.general.listen_ports_facts:

- name: List the required ports held by another process
  ansible.builtin.debug:
    msg: >-
      {{ {'tcp': ansible_facts.tcp_listen, 'udp': ansible_facts.udp_listen}
         | chutes.miner.busy_ports(['16443/tcp', '51820/udp'], ['kubelite']) }}
"""

RETURN = r"""
_value:
  description: One C(<port>/<proto> held by <name>[<pid>]) line per busy port.
  type: list
  elements: str
"""


def busy_ports(
    listening: Mapping[str, Iterable[Mapping[str, Any]]],
    ports: Iterable[str],
    allowed: Iterable[str],
    pod_pids: Iterable[int | str] = (),
) -> list[str]:
    """``listening`` is ``{'tcp': tcp_listen, 'udp': udp_listen}`` from listen_ports_facts."""
    allowed_names = set(allowed)
    in_pods = {str(pid) for pid in pod_pids}
    busy: list[str] = []
    for spec in ports:
        port_text, proto = str(spec).split("/")
        for sock in listening.get(proto, []) or []:
            if int(sock.get("port", -1)) != int(port_text):
                continue
            name = str(sock.get("name") or "")
            if name in allowed_names or (proto == "udp" and name in ("", "unknown")):
                continue  # the cluster itself, or a kernel socket (WireGuard)
            if str(sock.get("pid", "")) in in_pods:
                continue  # a workload of the cluster (a host-network pod)
            line = f"{spec} held by {name or 'unknown'}[{sock.get('pid', '?')}]"
            if line not in busy:
                busy.append(line)
    return busy


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {"busy_ports": busy_ports}
