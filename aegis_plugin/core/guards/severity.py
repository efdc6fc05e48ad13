"""How bad an advisory is: CVSS (v3 or v4 base score, computed by the `cvss` library) when the record
carries a vector, else the qualitative severity some databases give; None when the record says nothing."""
from __future__ import annotations

from typing import Any, Mapping, Optional

from cvss import CVSS3, CVSS4
from cvss.exceptions import CVSSError

from aegis_plugin.core.guards.defaults import SEVERITIES as LEVELS

_QUALITATIVE = {"low": "low", "moderate": "medium", "medium": "medium", "high": "high", "critical": "critical",
                "important": "high"}


def rank(level: str) -> int:
    return LEVELS.index(level)


def of(record: Mapping[str, Any], affected: Optional[Mapping[str, Any]] = None) -> Optional[str]:
    best: Optional[str] = None
    for entry in record.get("severity") or []:
        level = _cvss_level(entry.get("type", ""), entry.get("score", ""))
        if level and (best is None or rank(level) > rank(best)):
            best = level
    if best:
        return best
    for source in (affected or {}).get("ecosystem_specific"), (affected or {}).get("database_specific"), \
            record.get("database_specific"):
        level = _QUALITATIVE.get(str((source or {}).get("severity", "")).lower())
        if level:
            return level
    return None


def _cvss_level(kind: str, vector: str) -> Optional[str]:
    try:
        if kind == "CVSS_V3":
            score = float(CVSS3(vector).base_score)
        elif kind == "CVSS_V4":
            score = float(CVSS4(vector).base_score)
        else:
            return None
    except (CVSSError, ValueError, TypeError):
        return None
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "medium"
    return "low" if score > 0 else None
