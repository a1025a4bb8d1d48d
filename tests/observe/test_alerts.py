"""The chart's alert rules (helm/acme-gateway/files/alerts.yaml) with Debian's promtool:
they are valid rules, every alert has a promtool unit test in which it fires (and the same
tests hold series for which it must not), and a wrong expectation fails the run (so the
unit tests are really evaluated)."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.infra.prometheus import promtool

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "helm" / "acme-gateway" / "files" / "alerts.yaml"
UNIT_TESTS = Path(__file__).with_name("alerts_test.yaml")


def _alert_names() -> set[str]:
    doc = yaml.safe_load(ALERTS.read_text())
    return {r["alert"] for g in doc["groups"] for r in g["rules"] if "alert" in r}


def test_rules_pass_promtool_check() -> None:
    proc = promtool("check", "rules", str(ALERTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(_alert_names())} rules found" in proc.stdout


def test_rules_pass_their_unit_tests() -> None:
    proc = promtool("test", "rules", UNIT_TESTS.name, cwd=UNIT_TESTS.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    tests = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    firing: set[str] = set()
    for case in tests:
        for check in case["alert_rule_test"]:
            if check["exp_alerts"]:
                firing.add(check["alertname"])
                # Fewer alerts expected than distinct series sets given: some must stay quiet.
                assert len(check["exp_alerts"]) < len(case["input_series"]), case["name"]
    assert firing == _alert_names()


def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    """Expecting silence where an alert fires must fail promtool: the tests bite."""
    doc = yaml.safe_load(UNIT_TESTS.read_text())
    doc["rule_files"] = [str(ALERTS)]
    for case in doc["tests"]:
        for check in case["alert_rule_test"]:
            check["exp_alerts"] = []
    broken = tmp_path / "broken_test.yaml"
    broken.write_text(yaml.safe_dump(doc))
    proc = promtool("test", "rules", str(broken))
    assert proc.returncode != 0
    for name in _alert_names():
        assert f"alertname: {name}" in proc.stdout + proc.stderr, name
