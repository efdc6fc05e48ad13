"""The CI example passes zizmor: what Aegis asks of what it ships, its own CI example must do too."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

WORKFLOW = Path(__file__).resolve().parent / "github-actions.yml"
# zizmor's exit codes: 0 nothing found, 10-14 findings by highest severity; anything else is zizmor failing.
FINDINGS_EXIT_CODES = (0, 10, 11, 12, 13, 14)


def zizmor() -> Path:
    """The binary the zizmor wheel installed into this interpreter's environment."""
    dist = distribution("zizmor")
    candidates = [Path(sys.executable).parent / "zizmor"]
    candidates += [Path(str(dist.locate_file(file))) for file in dist.files or () if file.name == "zizmor"]
    found = [path for path in candidates if path.is_file()]
    assert found, f"no zizmor executable among {candidates}"
    return found[0]


def audit(workflow: Path) -> list[dict[str, Any]]:
    """zizmor's findings on one workflow, offline and with its default (regular) persona."""
    command = [zizmor(), "--offline", "--no-config", "--format", "json", workflow]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode in FINDINGS_EXIT_CODES, result.stderr
    findings = json.loads(result.stdout)
    assert isinstance(findings, list), result.stdout
    assert (result.returncode == 0) == (not findings), result
    return findings


def describe(finding: dict[str, Any]) -> str:
    rows = {loc["concrete"]["location"]["start_point"]["row"] + 1 for loc in finding["locations"]}
    lines = ", ".join(map(str, sorted(rows)))
    return f"{finding['ident']} ({finding['determinations']['severity']}) line {lines}: {finding['desc']}"


def test_zizmor_finds_nothing_in_the_ci_example() -> None:
    findings = audit(WORKFLOW)
    assert not findings, "zizmor on build-support/ci/github-actions.yml:\n" + "\n".join(map(describe, findings))


def test_zizmor_catches_the_ci_example_unhardened(tmp_path: Path) -> None:
    """The audit is live: undo the pins and persist-credentials, and zizmor reports exactly those."""
    text = WORKFLOW.read_text()
    text = re.sub(r"@[0-9a-f]{40} # (v\d+)\S*", r"@\1", text)
    text = re.sub(r"\n *persist-credentials: false[^\n]*", "", text)
    unhardened = tmp_path / "aegis.yml"
    unhardened.write_text(text)
    idents = sorted(finding["ident"] for finding in audit(unhardened))
    assert idents == ["artipacked"] * 2 + ["unpinned-uses"] * 4, "\n".join(map(describe, audit(unhardened)))
