"""The bottom layer: settings and signing. Everything else imports from here, never the reverse.

Layers, top to bottom: ``routers`` (HTTP) -> ``services`` (use cases) -> ``clients``, ``db``,
``relay`` (outside systems) -> ``core``. ``control_api/tests/test_layering.py`` checks the
imports.
"""
