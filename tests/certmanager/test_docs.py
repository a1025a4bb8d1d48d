"""The README's "Use with cert-manager" section shows the very YAML these tests apply."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.certmanager.examples import EXAMPLES

REPO = Path(__file__).resolve().parents[2]
FILES = sorted(p.name for p in EXAMPLES.glob("*.yaml"))


def test_examples_exist() -> None:
    assert {"registration.yaml", "issuer.yaml", "certificates.yaml"} <= set(FILES)


@pytest.mark.parametrize("doc", ["README.md", "docs/cert-manager.md"])
@pytest.mark.parametrize("name", FILES)
def test_docs_show_the_tested_yaml(doc: str, name: str) -> None:
    text = (REPO / doc).read_text()
    assert "## Use with cert-manager" in text, f"{doc} has no 'Use with cert-manager' section"
    block = "```yaml\n" + (EXAMPLES / name).read_text().rstrip("\n") + "\n```"
    assert block in text, f"{doc} does not show docs/examples/cert-manager/{name} verbatim"
