"""The alert rules are proven, not just written (deploy/prometheus/alerts.yml).

promtool (Debian's ``prometheus`` package; ``scripts/test`` installs it) checks the rules and the
Prometheus configuration that loads them, and runs the rules' unit tests
(deploy/prometheus/alerts.test.yml), in which every alert fires on its condition and stays quiet
without it. The checks here make sure that stays true as rules are added: every alert has both kinds
of case, and names a runbook section that exists in docs/runbooks.md.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "alerts.yml"
RULE_TESTS = PROMETHEUS / "alerts.test.yml"
CONFIG = PROMETHEUS / "prometheus.yml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
RUNBOOK_PREFIX = "docs/runbooks.md#"
CONTAINER_RULES = "/etc/prometheus/alerts.yml"  # where deploy/compose.yaml mounts alerts.yml


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = "promtool not found: apt-get install prometheus (Debian's package ships it)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; scripts/test installs it, so CI must have it")
        pytest.skip(message)
    return found


def run(promtool: str, *args: str, cwd: Path = ROOT) -> str:
    result = subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool {' '.join(args)} exited {result.returncode}:\n{output}"
    return output


def alerts() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def test_promtool_accepts_the_rules(promtool: str) -> None:
    output = run(promtool, "check", "rules", str(RULES))
    assert f"SUCCESS: {len(alerts())} rules found" in output, output


def test_promtool_accepts_the_configuration_that_loads_them(promtool: str, tmp_path: Path) -> None:
    """prometheus.yml as deployed, with the rule file's path in the container pointed at the real one."""
    config = CONFIG.read_text()
    assert config.count(CONTAINER_RULES) == 1, "prometheus.yml no longer loads the rules from the container path"
    shutil.copy(RULES, tmp_path / "alerts.yml")
    (tmp_path / "prometheus.yml").write_text(config.replace(CONTAINER_RULES, str(tmp_path / "alerts.yml")))
    output = run(promtool, "check", "config", str(tmp_path / "prometheus.yml"))
    assert f"SUCCESS: {len(alerts())} rules found" in output, output  # the rules were loaded and checked too


def test_every_alert_fires_and_stays_quiet_in_the_unit_tests(promtool: str) -> None:
    output = run(promtool, "test", "rules", str(RULE_TESTS))
    assert "SUCCESS" in output, output


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    """A new rule without unit tests fails here; so does a case naming an alert that does not exist."""
    cases = yaml.safe_load(RULE_TESTS.read_text())
    assert cases["rule_files"] == ["alerts.yml"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for group in cases["tests"]:
        for case in group.get("alert_rule_test", []):
            expected = case.get("exp_alerts") or []
            (firing if expected else quiet).add(case["alertname"])
            for alert in expected:
                # Labels always: an alert that fires with the wrong labels routes to the wrong place.
                assert alert.get("exp_labels"), f"{case['alertname']} at {case['eval_time']}: no exp_labels"
    names = set(alerts())
    assert (firing | quiet) <= names, f"cases for alerts that do not exist: {sorted((firing | quiet) - names)}"
    assert not names - firing, f"alerts never shown firing: {sorted(names - firing)}"
    assert not names - quiet, f"alerts never shown quiet: {sorted(names - quiet)}"


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped (hyphens, underscores
    and spaces kept), spaces turned into hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def runbook_sections() -> dict[str, str]:
    """Each section of docs/runbooks.md by its anchor: its text up to the next heading of its level or above."""
    lines = RUNBOOKS.read_text().splitlines()
    headings = [(index, len(match.group(1)), match.group(2)) for index, line in enumerate(lines)
                if (match := re.match(r"(#{1,6})\s+(.*)", line))]
    sections: dict[str, str] = {}
    for position, (index, level, title) in enumerate(headings):
        end = next((other for other, other_level, _ in headings[position + 1:] if other_level <= level), len(lines))
        anchor = github_anchor(title)
        assert anchor not in sections, f"two headings of docs/runbooks.md share the anchor #{anchor}"
        sections[anchor] = "\n".join(lines[index:end])
    return sections


def test_the_anchors_are_the_ones_github_makes() -> None:
    assert github_anchor("The cold tier falls behind") == "the-cold-tier-falls-behind"
    assert github_anchor("ClickHouse's disk is low") == "clickhouses-disk-is-low"
    assert github_anchor("The broker refuses, loses or holds back messages") == \
        "the-broker-refuses-loses-or-holds-back-messages"
    assert github_anchor("Data loss in ClickHouse: reload from cold") == "data-loss-in-clickhouse-reload-from-cold"


def test_every_alert_names_a_runbook_section_that_exists_and_names_it_back() -> None:
    sections = runbook_sections()
    for name, rule in alerts().items():
        annotations = rule["annotations"]
        runbook = annotations.get("runbook", "")
        assert runbook.startswith(RUNBOOK_PREFIX), f"{name}: runbook annotation {runbook!r}"
        anchor = runbook.removeprefix(RUNBOOK_PREFIX)
        assert anchor in sections, f"{name}: docs/runbooks.md has no section #{anchor} (has: {sorted(sections)})"
        # The section says it is the one for this alert, so a reader who searches for the name finds it.
        assert name in sections[anchor], f"{name}: section #{anchor} of docs/runbooks.md does not name it"
        # The annotation replaced the old "docs/runbooks.md, 'X'" references in the text.
        assert "runbooks.md" not in annotations["description"], f"{name}: the description names a runbook"
