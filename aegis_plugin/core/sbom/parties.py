"""Who supplied, wrote or described a component, as the records that say so name them.

The inventory carries people and organisations as their sources spell them: a Debian control file's
``Maintainer`` (``GNU Libc Maintainers <debian-glibc@lists.debian.org>``), a Python distribution's
``Author``/``Maintainer`` metadata (``Name <email>``, a bare address, or a name), the model card's ``owner``,
the organisation configured as the SBOMs' creator. This module reads those entries once for both writers.

SPDX 2.3 must say whether an actor is a person or an organisation, which none of those records do: an entry
is an organisation when its name says so (a team, maintainers, developers, a project, a company suffix such
as ``Inc.``), else a person. CycloneDX needs no such call (a supplier is an organisational entity with
contacts; authors are contacts).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from aegis_plugin.core.sbom import card as card_facts
from aegis_plugin.core.sbom.inventory import Inventory

_ORGANISATION_WORDS = re.compile(
    r"\b(team|maintainers|developers|devs|project|foundation|community|contributors|authors|group|"
    r"packagers|services|software|inc|ltd|llc|gmbh|corp|corporation|company|organization|organisation)\b\.?",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Party:
    name: str  # never empty: a bare address is its own name
    email: Optional[str] = None
    url: Optional[str] = None
    organization: Optional[bool] = None  # known to be one (or not); None: judged by the name

    @property
    def is_organization(self) -> bool:
        if self.organization is not None:
            return self.organization
        if self.name == self.email:  # a bare address: a mailing list is a group, anything else one person
            return "@lists." in self.name
        return bool(_ORGANISATION_WORDS.search(self.name))

    def spdx_actor(self) -> str:
        """``Person: Name (email)`` / ``Organization: Name``. Readers take the last parentheses as the address,
        so a name's own parentheses stay as written before one and become brackets where none follows."""
        kind = "Organization" if self.is_organization else "Person"
        if self.email:
            return f"{kind}: {self.name} ({self.email})"
        return f"{kind}: {self.name.replace('(', '[').replace(')', ']')}"


_NAMED_ADDRESS = re.compile(r"^(?P<name>.*?)\s*<(?P<email>[^<>\s]+@[^<>\s]+)>$")
_NAMED_URL = re.compile(r"^(?P<name>.*?)\s*<(?P<url>https?://[^<>\s]+)>$")
_BARE_ADDRESS = re.compile(r"^[^<>\s]+@[^<>\s]+$")


def parse(entry: str) -> Party:
    """One ``Name <email>``, ``Name <https://…>``, ``email`` or ``Name`` entry (as the inventory holds them)."""
    entry = " ".join(entry.split())
    named = _NAMED_ADDRESS.match(entry)
    if named:
        return Party(name=named.group("name").strip('" ') or named.group("email"), email=named.group("email"))
    named = _NAMED_URL.match(entry)
    if named and named.group("name").strip('" '):
        return Party(name=named.group("name").strip('" '), url=named.group("url"))
    if _BARE_ADDRESS.match(entry):
        return Party(name=entry, email=entry)
    return Party(name=entry)


def first(*groups: "tuple[str, ...]") -> Optional[Party]:
    """The first entry of the first non-empty group (a maintainer before an author), parsed."""
    for group in groups:
        if group:
            return parse(group[0])
    return None


def owner(inv: Inventory) -> Optional[Party]:
    """The model card's owner: the supplier of the model and the app."""
    name = card_facts.facts(inv.model.card).owner
    return parse(name) if name else None


def creator(inv: Inventory) -> Optional[Party]:
    """The configured organisation (``[aegis-sbom].organization``): the documents' creator beside the tool."""
    found = inv.image.creator
    return Party(found.name, found.email, found.url, organization=True) if found else None
