# Copyright: chutes.miner developers
# MIT License
"""Documentation of the action plugin chutes.miner.host_report (no module code runs)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: host_report
author: chutes.miner developers (!UNKNOWN)
version_added: 0.1.0
short_description: Print one report for all hosts of a play, hosts with the same text together
description:
  - Takes each host's text (a table, a list of failures) and prints every distinct text once,
    headed by the number and names of the hosts that have it. Run it once per play
    (C(run_once)) instead of a C(debug) or C(fail) per host, which prints one copy per host.
  - The report is written straight to the terminal, so it reads the same with every stdout
    callback and result format and is never wrapped.
  - With O(fail), fails when any host has a text; the result's C(msg) is O(msg), one line.
  - An action plugin; it runs on the controller and contacts no host.
options:
  texts:
    description: Host name to its text; hosts with an empty text are left out.
    type: dict
    required: true
  title:
    description: First line of the report.
    type: str
    default: ""
  fail:
    description: Fail when any host has a text.
    type: bool
    default: false
  msg:
    description: The one-line result message (the failure's message with O(fail)).
    type: str
    default: ""
attributes:
  check_mode:
    support: full
    description: Reads and prints only, so check mode runs it as usual.
  diff_mode:
    support: none
    description: Changes nothing, so there is no diff to show.
"""

EXAMPLES = r"""
- name: Show each host's probe table once, hosts with the same table together
  chutes.miner.host_report:
    title: "Mirror probe results / 镜像探测结果"
    texts: >-
      {{ dict(ansible_play_hosts | zip(ansible_play_hosts | map('extract', hostvars, 'table'))) }}
  run_once: true
"""

RETURN = r"""
msg:
  description: The O(msg) argument.
  type: str
  returned: always
"""
