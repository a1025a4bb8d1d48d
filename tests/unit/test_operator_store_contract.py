"""The operator reaches the store only through its facade, and knows no SQL."""

from __future__ import annotations

import ast
from pathlib import Path

OPERATOR = Path(__file__).resolve().parents[2] / "operator" / "acme_operator"
FACADE = "acme_server.store.operator_facade"


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
    return out


def _offending(imports: set[str]) -> set[str]:
    store = {
        name
        for name in imports
        if (name == "acme_server.store" or name.startswith("acme_server.store."))
        and name != FACADE
        and not name.startswith(FACADE + ".")
    }
    sql = {name for name in imports if name == "sqlalchemy" or name.startswith("sqlalchemy.")}
    return store | sql


def test_operator_modules_use_only_the_store_facade() -> None:
    modules = sorted(OPERATOR.rglob("*.py"))
    assert len(modules) > 10, f"operator sources not found under {OPERATOR}"
    bad = {str(p.relative_to(OPERATOR)): sorted(_offending(_imports(p))) for p in modules}
    assert {k: v for k, v in bad.items() if v} == {}
    assert any(FACADE in _imports(p) for p in modules), "nothing uses the facade"


def test_the_check_catches_a_bypass() -> None:
    """The rule itself can fail: direct store modules and SQLAlchemy are reported."""
    assert _offending({"acme_server.store", "acme_server.store.registrations"}) == {
        "acme_server.store",
        "acme_server.store.registrations",
    }
    assert _offending({"sqlalchemy", f"{FACADE}.OperatorStore", FACADE}) == {"sqlalchemy"}
