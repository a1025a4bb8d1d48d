"""The domain core knows neither SQL nor HTTP: importing it loads neither library."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import acme_server.domain

FORBIDDEN = ("sqlalchemy", "aiohttp", "alembic", "asyncpg", "aiosqlite")
DOMAIN = Path(acme_server.domain.__file__).parent
MODULES = [f"acme_server.domain.{m.name}" for m in pkgutil.iter_modules([str(DOMAIN)])]


def test_the_core_has_the_expected_modules() -> None:
    assert {"statuses", "problems", "identifiers", "lifecycle"} <= {
        m.rsplit(".", 1)[1] for m in MODULES
    }


def test_importing_the_core_loads_no_sql_or_http_library() -> None:
    # A fresh interpreter: this test process has long imported both.
    code = (
        "import sys\n"
        f"for m in {MODULES!r}: __import__(m)\n"
        f"print(sorted(n for n in sys.modules if n.split('.')[0] in {FORBIDDEN!r}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_the_core_imports_only_itself_and_pure_libraries() -> None:
    for path in DOMAIN.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top not in FORBIDDEN, f"{path.name} imports {name}"
                if top == "acme_server":
                    assert name.startswith("acme_server.domain"), f"{path.name} imports {name}"
