"""Debian's Packages indexes: pick the newest version of each wanted package across suites, and check
that the picked set is closed under Depends/Pre-Depends (what apt would do, minus the solver: the
spec names every package, this only verifies)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from aegis_plugin.core.debian.deb822 import parse_paragraphs
from aegis_plugin.core.debian.errors import DebianError
from aegis_plugin.core.debian.lock import DebPackage
from aegis_plugin.core.debian.version import compare_versions, satisfies


@dataclass(frozen=True)
class IndexEntry:
    """One package paragraph of a Packages file, reduced to what the lock and the check need."""

    package: DebPackage
    pre_depends: str = ""
    depends: str = ""
    provides: str = ""
    installed_size_kib: int = 0


@dataclass(frozen=True)
class Relation:
    name: str
    op: str | None = None
    version: str | None = None


_RELATION = re.compile(
    r"^([a-z0-9][a-z0-9+.-]*)(?::[a-z0-9-]+)?\s*(?:\(\s*(<<|<=|>=|>>|=|<|>)\s*([0-9A-Za-z.+~:-]+)\s*\))?$"
)


def parse_relations(field: str) -> list[list[Relation]]:
    """``a (>= 1) | b, c`` -> [[a>=1, b], [c]]; arch qualifiers (``:any``) and restrictions dropped."""
    groups = []
    for group in field.split(","):
        group = " ".join(group.split())
        if not group:
            continue
        alternatives = []
        for alternative in group.split("|"):
            text = re.sub(r"\[[^\]]*\]|<[^>]*>", "", alternative).strip()  # [arch] and <profile>
            match = _RELATION.match(text)
            if not match:
                raise DebianError(f"cannot parse the relation {alternative.strip()!r} in {field!r}")
            alternatives.append(Relation(match.group(1), match.group(2), match.group(3)))
        groups.append(alternatives)
    return groups


def _source(para: dict[str, str]) -> tuple[str, str]:
    name, _, rest = para.get("Source", para["Package"]).partition(" ")
    version = rest.strip().strip("()").strip() or para["Version"]
    return name, version


def parse_packages(text: str, suite: str, arch: str) -> list[IndexEntry]:
    """The entries of one Packages file that install on ``arch`` (``all`` included)."""
    entries = []
    for para in parse_paragraphs(text):
        if para.get("Architecture") not in (arch, "all"):
            continue
        source, source_version = _source(para)
        package = DebPackage(
            name=para["Package"],
            version=para["Version"],
            architecture=para["Architecture"],
            sha256=para["SHA256"],
            size=int(para["Size"]),
            filename=para["Filename"],
            source=source,
            source_version=source_version,
            suite=suite,
        )
        entries.append(
            IndexEntry(
                package=package,
                pre_depends=para.get("Pre-Depends", ""),
                depends=para.get("Depends", ""),
                provides=para.get("Provides", ""),
                installed_size_kib=int(para.get("Installed-Size", "0") or 0),
            )
        )
    return entries


def select_newest(names: Iterable[str], suites: Sequence[Sequence[IndexEntry]]) -> dict[str, IndexEntry]:
    """For each name, the highest version in any suite; on a tie the earlier suite wins (the main
    suite is listed first: its mirror is the one always configured)."""
    wanted = set(names)
    best: dict[str, IndexEntry] = {}
    for entries in suites:
        for entry in entries:
            name = entry.package.name
            if name not in wanted:
                continue
            if name not in best or compare_versions(entry.package.version, best[name].package.version) > 0:
                best[name] = entry
    missing = sorted(wanted - set(best))
    if missing:
        raise DebianError(f"not in any reachable suite: {', '.join(missing)}")
    return best


def _provided(selected: Mapping[str, IndexEntry]) -> dict[str, list[str | None]]:
    """Virtual name -> versions it is provided at (None for an unversioned Provides)."""
    provided: dict[str, list[str | None]] = {}
    for entry in selected.values():
        for group in parse_relations(entry.provides):
            for relation in group:
                provided.setdefault(relation.name, []).append(relation.version)
    return provided


def _met(
    relation: Relation, selected: Mapping[str, IndexEntry], provided: Mapping[str, list[str | None]]
) -> bool:
    real = selected.get(relation.name)
    if real is not None and (
        relation.op is None or satisfies(real.package.version, relation.op, relation.version or "")
    ):
        return True
    for version in provided.get(relation.name, []):
        if relation.op is None:
            return True
        if version is not None and satisfies(version, relation.op, relation.version or ""):
            return True
    return False


def unsatisfied(selected: Mapping[str, IndexEntry], ignored: Iterable[str] = ()) -> list[str]:
    """Human-readable dependency groups of the selected set that nothing in the set satisfies.

    A group is satisfied when any alternative is a selected package of a fitting version, a
    fitting Provides of one, or a name on the ignore list.
    """
    ignore = set(ignored)
    provided = _provided(selected)
    problems = []
    for name in sorted(selected):
        entry = selected[name]
        for field, text in (("Pre-Depends", entry.pre_depends), ("Depends", entry.depends)):
            for group in parse_relations(text):
                if any(relation.name in ignore or _met(relation, selected, provided) for relation in group):
                    continue
                problems.append(f"{name} {field}: {' | '.join(_show(r) for r in group)}")
    return problems


def unused_ignores(selected: Mapping[str, IndexEntry], ignored: Iterable[str]) -> list[str]:
    """Ignore-list names no selected package depends on: stale entries worth deleting."""
    named = {
        relation.name
        for entry in selected.values()
        for text in (entry.pre_depends, entry.depends)
        for group in parse_relations(text)
        for relation in group
    }
    return sorted(set(ignored) - named)


def _show(relation: Relation) -> str:
    return relation.name if relation.op is None else f"{relation.name} ({relation.op} {relation.version})"
