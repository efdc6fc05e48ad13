"""What a guard found, and the three ways it is reported: a console table, JSON, and SARIF 2.1.0 (which CI
systems turn into annotations on the files named)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence

TOOL = "aegis"
INFORMATION_URI = "https://github.com/aegis-ml/aegis"
# Rule id -> what it guards (SARIF's rule descriptions and the README's list).
RULES: Dict[str, str] = {
    "vulnerability": "A package in the image has a known vulnerability at or above the severity gate.",
    "vex": "A VEX statement tries to accept a finding but is unjustified, expired or incomplete.",
    "bloat-denied": "A package the runtime image must not carry (notebooks, experiment trackers, compilers, ...).",
    "bloat-training-only": "A package only the training resolve asks for ships in the runtime image.",
    "bloat-size-budget": "The image is larger than the target's size budget.",
    "accelerator-cuda": "The declared accelerator disagrees with the CUDA builds in the image.",
}


@dataclass(frozen=True)
class Finding:
    rule: str
    level: str  # "error" fails the guard; "warning" and "note" are reported only
    message: str
    location: str  # a repository file the finding is about (a lockfile, the BUILD file)
    package: Optional[str] = None  # purl
    advisory: Optional[str] = None
    severity: Optional[str] = None
    details: Dict[str, Any] = field(default_factory=dict)


def errors(findings: Sequence[Finding]) -> List[Finding]:
    return [f for f in findings if f.level == "error"]


def to_json(target: str, findings: Sequence[Finding], summary: Dict[str, Any]) -> bytes:
    return json.dumps({"target": target, "summary": summary, "findings": [asdict(f) for f in findings]},
                      indent=2, sort_keys=True).encode() + b"\n"


def to_sarif(findings: Sequence[Finding]) -> bytes:
    rules = sorted({f.rule for f in findings} | set(RULES))
    return json.dumps({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": TOOL, "informationUri": INFORMATION_URI,
                "rules": [{"id": r, "shortDescription": {"text": RULES.get(r, r)}} for r in rules],
            }},
            "results": [{
                "ruleId": f.rule,
                "level": f.level,
                "message": {"text": f.message},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": f.location}}}],
                **({"properties": {k: v for k, v in (("package", f.package), ("advisory", f.advisory),
                                                      ("severity", f.severity)) if v}}
                   if (f.package or f.advisory) else {}),
            } for f in findings],
        }],
    }, indent=2, sort_keys=True).encode() + b"\n"


def table(findings: Sequence[Finding]) -> str:
    """One line per finding, errors first, aligned for the console."""
    if not findings:
        return "no findings"
    order = {"error": 0, "warning": 1, "note": 2}
    rows = [("LEVEL", "RULE", "SEVERITY", "SUBJECT", "FINDING")] + [
        (f.level, f.rule, f.severity or "-", f.advisory or f.package or f.location, f.message)
        for f in sorted(findings, key=lambda f: (order.get(f.level, 3), f.rule, f.message))
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(widths[i]) if i < 4 else cell for i, cell in enumerate(row)).rstrip()
                     for row in rows)
