"""Parsing client JSON without trusting its shape: bounded nesting, one value per member.

Python's json module recurses once per `[`/`{`, so 100k nested brackets end in a
RecursionError (a 500). Depth is measured first with a linear scan, and every parse refuses
duplicate member names (two readers of one header must never see two different values) and
the non-JSON constants NaN/Infinity.
"""

from __future__ import annotations

import json
import re
from typing import Any

from acme_server.domain.problems import AcmeProblem, ProblemType

# ACME and JOSE objects are a few levels deep; anything deeper is hostile.
MAX_DEPTH = 32

# One token per match, left to right: a string literal (closed, or running to the end of
# unterminated input) or a bracket. Every byte is looked at once, so hostile quoting cannot
# make the scan quadratic.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)|[\[\]{}]', re.DOTALL)


def nesting_depth(data: bytes) -> int:
    """Deepest bracket nesting outside string literals (exact for valid JSON)."""
    depth = deepest = 0
    for match in _TOKEN.finditer(data):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate member name")
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(data: bytes | str, what: str) -> Any:
    """Parse client JSON; any defect is a `malformed` problem naming `what`."""
    raw = data.encode() if isinstance(data, str) else data
    brackets = raw.count(b"[") + raw.count(b"{")  # cheap: most bodies need no scan
    if brackets > MAX_DEPTH and nesting_depth(raw) > MAX_DEPTH:
        raise AcmeProblem(ProblemType.MALFORMED, f"{what} is nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(raw, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except ValueError as exc:  # includes JSONDecodeError and UnicodeDecodeError
        if "duplicate member" in str(exc):
            raise AcmeProblem(
                ProblemType.MALFORMED, f"{what} has a duplicate member name"
            ) from None
        raise AcmeProblem(ProblemType.MALFORMED, f"{what} is not valid JSON") from None
    except RecursionError:  # unreachable after the depth check; never a 500
        raise AcmeProblem(ProblemType.MALFORMED, f"{what} is nested too deeply") from None
