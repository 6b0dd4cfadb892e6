# Copyright: chutes.miner developers
# MIT License
"""Documentation of the action plugin chutes.miner.inventory_report (no module code runs)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: inventory_report
author: chutes.miner developers (!UNKNOWN)
version_added: 0.1.0
short_description: Print the inventory validation report and fail when it lists a problem
description:
  - Prints one table (host, variable, problem and fix) in the languages of C(lang), problems
    shared by several hosts on one row, followed by notices. The table is written straight to
    the terminal, so it reads the same with every stdout callback and result format.
  - Fails with a one-line summary when there is a problem; otherwise returns a summary.
  - An action plugin; it runs on the controller and contacts no host.
options:
  result:
    description: The dict returned by the C(chutes.miner.inventory_problems) filter.
    type: dict
    required: true
  lang:
    description:
      - Languages and their order, C(en), C(zh) or a list of both. Anything else means both,
        English first.
    type: raw
    default: [en, zh]
attributes:
  check_mode:
    support: full
    description: Reads and prints only, so check mode runs it as usual.
  diff_mode:
    support: none
    description: Changes nothing, so there is no diff to show.
"""

EXAMPLES = r"""
- name: inventory | Report every problem at once
  chutes.miner.inventory_report:
    result: "{{ __preflight_inventory }}"
    lang: "{{ chutes_lang | default(['en', 'zh']) }}"
"""

RETURN = r"""
msg:
  description: One-line summary in the chosen languages.
  type: str
  returned: always
"""
