"""House rules that keep the sandbox honest and the code location safe to reload."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mlconnector_pipelines"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            # resolve relative imports against the file's package
            if node.level:
                parts = path.relative_to(PACKAGE.parent).with_suffix("").parts[: -node.level]
                names.add(".".join([*parts, node.module] if node.module else parts))
            else:
                names.add(node.module or "")
    return names


@pytest.mark.parametrize("path", sorted((PACKAGE / "sandbox").rglob("*.py")), ids=lambda p: p.name)
def test_sandbox_imports_nothing_of_the_product(path):
    product = {
        m
        for m in imported_modules(path)
        if m.startswith("mlconnector_pipelines") and not m.startswith("mlconnector_pipelines.sandbox")
    }
    assert not product, f"{path.name} imports {product}: the sandbox must follow the specs on its own"


@pytest.mark.parametrize(
    "path",
    sorted(p for sub in ("systems", "core", "flows", "warehouse") for p in (PACKAGE / sub).rglob("*.py")),
    ids=lambda p: p.name,
)
def test_product_never_imports_the_sandbox(path):
    assert not {m for m in imported_modules(path) if m.startswith("mlconnector_pipelines.sandbox")}


def test_flows_build_no_urls():
    """Protocol knowledge lives in systems/: flows hold no URL paths or OData syntax."""
    for path in (PACKAGE / "flows").rglob("*.py"):
        text = path.read_text()
        for marker in ("/api/v2.0", "$filter", "$expand", "https://"):
            assert marker not in text, (path.name, marker)
