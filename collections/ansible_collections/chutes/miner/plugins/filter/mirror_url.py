# Copyright: (c) 2026, chutes.miner developers
# MIT License (see LICENSE in the collection root)
"""Filter ``chutes.miner.mirror_url``: route a download URL through the chosen mirror."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.chutes.miner.plugins.module_utils import mirrors

DOCUMENTATION = r"""
name: mirror_url
author: chutes.miner developers (!UNKNOWN)
version_added: 0.1.0
short_description: Route a download URL through the mirror chosen by chutes.miner.mirrors
description:
  - Every role that downloads something passes the URL through this filter with
    C(mirrors_effective), the fact the C(chutes.miner.mirrors) role exports.
  - A Kubernetes release URL (below C(mirrors_effective.k8s_binaries_upstream)) goes to the
    C(k8s_binaries) mirror when one was chosen.
  - Any other URL goes through the artifact server or the files prefix mirror,
    C(https://<host>/<path>) becoming C(<prefix>/<host>/<path>).
  - With no mirror (profile C(none), or an empty or missing fact) the URL is returned unchanged.
options:
  _input:
    description: An C(http) or C(https) URL; anything else is an error.
    type: str
    required: true
  effective:
    description: The C(mirrors_effective) fact.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Download the Helm release through the files mirror
  ansible.builtin.get_url:
    url: >-
      {{ 'https://get.helm.sh/helm-v3.16.2-linux-amd64.tar.gz'
         | chutes.miner.mirror_url(mirrors_effective) }}
    dest: /tmp/helm.tar.gz
    mode: "0644"
"""

RETURN = r"""
_value:
  description: The URL to download from.
  type: str
"""


def mirror_url(url: str, effective: dict[str, Any] | None = None) -> str:
    """``{{ url | chutes.miner.mirror_url(mirrors_effective) }}``."""
    try:
        return str(mirrors.mirror_url(str(url), effective))
    except ValueError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {"mirror_url": mirror_url}
