"""pytest plugin (entry point `pytest11`): pin the real `graval` library in `sys.modules`.

This repository keeps the bootstrap in a directory named `graval/`, the library's import name.
pytest's importlib mode, run from the repository root, names `graval/tests/conftest.py`
`graval.tests.conftest` and would register that directory as module `graval`, hiding the
installed library. Importing the library first (no native code loads) keeps it in place.
"""

import graval  # noqa: F401
