"""The machine's apt sources: where the Debian mirror is, without naming a host in any committed file.

Both formats apt reads are understood: deb822 ``*.sources`` files and one-line ``sources.list``.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from aegis_plugin.core.debian.deb822 import parse_paragraphs


@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str | None = None  # a keyring path, when the source names one


def parse_sources_list(text: str) -> list[AptSource]:
    """One-line format: ``deb [opt=val ...] URI SUITE COMPONENT...``; only ``deb`` lines count."""
    found = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        rest = line[len("deb ") :].strip()
        options: dict[str, str] = {}
        if rest.startswith("["):
            inside, _, rest = rest[1:].partition("]")
            for option in inside.split():
                key, _, value = option.partition("=")
                options[key] = value
        words = shlex.split(rest)
        if len(words) < 2:
            continue
        found.append(
            AptSource(
                uri=words[0],
                suites=(words[1],),
                components=tuple(words[2:]),
                signed_by=options.get("signed-by"),
            )
        )
    return found


def parse_deb822_sources(text: str) -> list[AptSource]:
    """deb822 format: one paragraph per source, several URIs and suites allowed."""
    found = []
    for para in parse_paragraphs(text):
        if para.get("Enabled", "yes").strip().lower() == "no":
            continue
        if "deb" not in para.get("Types", "").split():
            continue
        signed_by = para.get("Signed-By", "").strip()
        keyring = signed_by if signed_by and "\n" not in signed_by else None  # inline keys: none
        for uri in para.get("URIs", "").split():
            found.append(
                AptSource(
                    uri=uri,
                    suites=tuple(para.get("Suites", "").split()),
                    components=tuple(para.get("Components", "").split()),
                    signed_by=keyring,
                )
            )
    return found


def read_apt_sources(apt_dir: str | os.PathLike[str] = "/etc/apt") -> list[AptSource]:
    """All ``deb`` sources in the order apt reads them: sources.list, then sources.list.d sorted."""
    apt = Path(apt_dir)
    found: list[AptSource] = []
    main_list = apt / "sources.list"
    if main_list.is_file():
        found += parse_sources_list(main_list.read_text())
    parts = apt / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if path.suffix == ".list":
                found += parse_sources_list(path.read_text())
            elif path.suffix == ".sources":
                found += parse_deb822_sources(path.read_text())
    return found


def find_source(sources: list[AptSource], suite: str, component: str = "main") -> AptSource | None:
    """The first source serving ``suite`` with ``component``, as apt would pick it."""
    for source in sources:
        if suite in source.suites and component in source.components:
            return source
    return None


def mirror_for_suite(sources: list[AptSource], suite: str, component: str = "main") -> str | None:
    """The mirror root serving ``suite``; ``<codename>-updates`` lives beside ``<codename>`` in the
    same archive, so it falls back to that source (security updates are a separate archive)."""
    source = find_source(sources, suite, component)
    if source is None and suite.endswith("-updates"):
        source = find_source(sources, suite[: -len("-updates")], component)
    return source.uri if source else None
