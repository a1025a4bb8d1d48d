"""docs/profiles.md: its profiles file is what the server loads, its CLI block runs as
written against a real store, and the AcmeRegistration it shows fits the CRD's fields."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import timedelta
from pathlib import Path

import yaml

from acme_server.profile_config import load_profiles
from tests.gateway_proc import GATEWAY

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "profiles.md"


def _block(marker: str, lang: str) -> str:
    text = DOC.read_text()
    head = f"<!-- tested: tests/profiles/test_docs.py {marker} -->\n```{lang}\n"
    assert head in text, f"docs/profiles.md lost its tested {lang} block"
    return text.split(head, 1)[1].split("\n```", 1)[0]


def test_documented_profiles_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "profiles.yaml"
    path.write_text(_block("loads this file", "yaml"))
    profiles = load_profiles(path, timedelta(days=90))
    assert set(profiles.meta()) == {"default", "shortlived", "tlsclient", "internal"}
    internal = profiles.profiles["internal"]
    assert internal.validity == timedelta(days=30) and internal.key_types == ("ecdsa",)
    assert not internal.common_name and internal.max_names == 10
    assert profiles.profiles["tlsclient"].explicit_grant


def test_documented_cli_block_runs(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PATH": f"{Path(GATEWAY).parent}:{os.environ['PATH']}",
        "ACME_GATEWAY_DATA_DIR": str(tmp_path / "data"),
    }
    script = "set -euo pipefail\n" + _block("runs this block", "sh")
    proc = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    created, *updates = [json.loads(line) for line in proc.stdout.splitlines()]
    assert created["profiles"] == ["default", "shortlived"]
    assert created["default_profile"] == "shortlived"
    assert updates[-1]["profiles"] is None and updates[-1]["default_profile"] is None


def test_documented_registration_fields_are_in_the_crd() -> None:
    text = DOC.read_text()
    example = next(
        doc
        for block in text.split("```yaml\n")[1:]
        for doc in [yaml.safe_load(block.split("\n```", 1)[0])]
        if isinstance(doc, dict) and doc.get("kind") == "AcmeRegistration"
    )
    crd = yaml.safe_load((REPO / "crds" / "acme-gateway.io_acmeregistrations.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert set(example["spec"]) <= set(spec["properties"])
    assert spec["properties"]["profiles"]["items"]["maxLength"] == 64
