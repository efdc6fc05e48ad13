"""A vulnerability database of OSV records (https://ossf.github.io/osv-schema/), read from a directory or
an archive (.tar.gz, .zip) of `.json`/`.yaml` files, or one `.json` file of a record or a list of them, and
OSV's rule for "is this version affected".

The database is a build input pinned by sha256: the same database and inventory always give the same
findings, and updating it is a visible change in the repository.
"""
from __future__ import annotations

import json
import os
import re
import tarfile
import zipfile
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple

import yaml

from aegis_plugin.core.errors import AegisError
from aegis_plugin.core.guards import versions


# libyaml's loader when PyYAML has it (its wheels do): some ten times faster on thousands of records.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class DatabaseError(AegisError):
    pass


def normalize(ecosystem: str, name: str) -> str:
    """Package names as each ecosystem compares them (PEP 503 for PyPI; Debian names are already canonical)."""
    if ecosystem.split(":", 1)[0] == "PyPI":
        return re.sub(r"[-_.]+", "-", name).lower()
    return name


@dataclass
class Database:
    advisories: List[Dict[str, Any]] = field(default_factory=list)
    # (ecosystem family, normalized name) -> advisories naming that package
    by_package: Dict[Tuple[str, str], List[Dict[str, Any]]] = field(default_factory=dict)

    def add(self, record: Dict[str, Any], origin: str) -> None:
        if not isinstance(record, dict) or "id" not in record:
            raise DatabaseError(f"{origin}: not an OSV record (no `id`)")
        if record.get("withdrawn"):
            return
        self.advisories.append(record)
        for affected in record.get("affected", []):
            package = affected.get("package") or {}
            ecosystem, name = package.get("ecosystem", ""), package.get("name", "")
            key = (ecosystem.split(":", 1)[0], normalize(ecosystem, name))
            entries = self.by_package.setdefault(key, [])
            if not entries or entries[-1] is not record:
                entries.append(record)

    def newest_modified(self) -> Optional[str]:
        """The date (YYYY-MM-DD) of the newest record: how fresh the pinned database is."""
        dates = [str(r.get("modified", ""))[:10] for r in self.advisories if r.get("modified")]
        return max(dates) if dates else None

    def candidates(self, ecosystem: str, name: str) -> List[Dict[str, Any]]:
        return self.by_package.get((ecosystem.split(":", 1)[0], normalize(ecosystem, name)), [])


def load(path: str) -> Database:
    database = Database()
    for origin, data in _files(path):
        try:
            record = json.loads(data) if origin.endswith(".json") else yaml.load(data, Loader=_YAML_LOADER)
        except (ValueError, yaml.YAMLError) as e:
            raise DatabaseError(f"{origin}: unreadable OSV record ({e})") from None
        for one in record if isinstance(record, list) else [record]:
            database.add(one, origin)
    if not database.advisories:
        raise DatabaseError(f"{path}: no OSV records (.json, .yaml) found")
    return database


def _files(path: str) -> Iterator[Tuple[str, bytes]]:
    wanted = (".json", ".yaml", ".yml")
    if os.path.isdir(path):
        for root, dirs, names in os.walk(path):
            dirs.sort()
            for name in sorted(names):
                if name.endswith(wanted):
                    with open(os.path.join(root, name), "rb") as f:
                        yield os.path.join(root, name), f.read()
    elif path.endswith((".tar.gz", ".tgz", ".tar", ".gz")):
        with tarfile.open(path) as tar:
            for member in sorted(tar.getmembers(), key=lambda m: m.name):
                if member.isfile() and member.name.endswith(wanted):
                    yield f"{path}:{member.name}", tar.extractfile(member).read()  # type: ignore[union-attr]
    elif path.endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            for name in sorted(archive.namelist()):
                if name.endswith(wanted):
                    yield f"{path}:{name}", archive.read(name)
    elif path.endswith(wanted):
        with open(path, "rb") as f:
            yield path, f.read()
    else:
        raise DatabaseError(f"{path}: expected a directory, .tar.gz, .zip or OSV .json/.yaml file")


def affected(record: Mapping[str, Any], ecosystem: str, name: str, version: str) -> Optional[Dict[str, Any]]:
    """The `affected` entry of `record` that covers this package version, or None (OSV's evaluation:
    an explicit `versions` list, or ECOSYSTEM ranges of introduced/fixed/last_affected events)."""
    wanted = normalize(ecosystem, name)
    for entry in record.get("affected", []):
        package = entry.get("package") or {}
        if not versions.ecosystem_matches(package.get("ecosystem", ""), ecosystem):
            continue
        if normalize(ecosystem, package.get("name", "")) != wanted:
            continue
        if version in (entry.get("versions") or []):
            return dict(entry)
        parse = versions.parser(ecosystem)
        try:
            current = parse(version)
        except versions.UnknownVersion:
            continue
        for r in entry.get("ranges") or []:
            if r.get("type") == "ECOSYSTEM" and _in_range(current, r.get("events") or [], parse):
                return dict(entry)
    return None


def _in_range(current: Any, events: Iterable[Mapping[str, str]], parse) -> bool:
    """OSV's algorithm: sort the events by version, walk them, and track whether `current` is affected."""
    parsed = []
    for event in events:
        for kind, value in event.items():
            if kind not in ("introduced", "fixed", "last_affected", "limit"):
                continue
            try:
                point = None if value == "0" and kind == "introduced" else parse(value)
            except versions.UnknownVersion:
                return False
            parsed.append((kind, point))
    affected_now = False
    for kind, point in sorted(parsed, key=lambda e: (e[1] is not None, e[1] if e[1] is not None else 0)):
        if kind == "introduced" and (point is None or current >= point):
            affected_now = True
        elif kind == "fixed" and point is not None and current >= point:
            affected_now = False
        elif kind == "last_affected" and point is not None and current > point:
            affected_now = False
        elif kind == "limit" and point is not None and current >= point:
            affected_now = False
    return affected_now
