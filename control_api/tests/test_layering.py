"""control_api's layers by their imports: nothing low imports anything above it.

Top to bottom: ``routers`` and the app wiring (``main``, ``deps``) -> ``services`` -> ``clients``,
``db`` -> ``core`` (settings, signing). Every import is read from the source (``ast``), lazy ones
inside functions included, so a layer cannot reach upward by importing late.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "control_api"
UPPER = ("control_api.services", "control_api.routers", "control_api.main", "control_api.deps")
# Each lower layer and the packages it must never import.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "clients": UPPER,
    "db": UPPER,
    "core": (*UPPER, "control_api.clients", "control_api.db", "control_api.relay"),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(source: str, module: str) -> list[tuple[int, str]]:
    """Every module a source imports, relative imports resolved against `module`."""
    found: list[tuple[int, str]] = []
    package = module.split(".")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level]
                base = ".".join([*anchor, base] if base else anchor)
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def violations(source: str, module: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{module}:{line} imports {name}"
        for line, name in imports(source, module)
        if any(name == up or name.startswith(up + ".") for up in forbidden)
    ]


def _layer_files(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_lower_layers_never_import_upward(layer: str) -> None:
    files = _layer_files(layer)
    assert files, f"no modules under {layer}/"
    found = [
        v
        for path in files
        for v in violations(path.read_text(), _module_name(path), FORBIDDEN[layer])
    ]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    ("source", "module"),
    [
        ("from control_api.services.auth import authenticate", "control_api.clients.k8s"),
        ("import control_api.routers.servers", "control_api.db.queries"),
        ("def late():\n    from control_api.deps import get_db\n", "control_api.clients.graval"),
        ("from ..services import signing", "control_api.clients.validator"),
        ("from .. import main", "control_api.db.pool"),
    ],
)
def test_checker_catches_an_upward_import(source: str, module: str) -> None:
    assert violations(source, module, UPPER), source


def test_checker_accepts_downward_and_sibling_imports() -> None:
    source = (
        "from control_api.core.signing import Signer\n"
        "from .k8s import KubeClient\n"
        "from control_api.servicesx import y\n"
    )
    assert violations(source, "control_api.clients.graval", UPPER) == []


def test_settings_and_signing_live_in_core() -> None:
    assert (PACKAGE / "core" / "config.py").is_file()
    assert (PACKAGE / "core" / "signing.py").is_file()
    assert not (PACKAGE / "config.py").exists()
    assert not (PACKAGE / "services" / "signing.py").exists()
