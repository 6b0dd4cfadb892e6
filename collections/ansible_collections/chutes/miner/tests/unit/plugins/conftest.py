"""Fixtures of the module unit tests: a real AnsibleModule, built the way Ansible builds one."""

from __future__ import annotations

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args


@pytest.fixture
def module() -> AnsibleModule:
    """An AnsibleModule without options, for the helpers that take one (atomic_move, ...)."""
    with patch_module_args({}):
        return AnsibleModule(argument_spec={}, supports_check_mode=True)
