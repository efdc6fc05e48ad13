"""Declared licenses as SPDX expressions, shared by the CycloneDX and the SPDX writers.

Debian packages declare licenses with the short names of DEP-5 copyright files (``GPL-2+``, ``Expat``,
``BSD-3-clause``, ``public-domain``, ``GPL-3+ with GCC-3.1 exception``, ``GPL-2+ or Artistic-2.0``);
Python distributions declare an SPDX expression (``License-Expression``) or free text (``License``,
classifiers). Names that map to the SPDX license list obviously (a different spelling of the same license)
become SPDX ids; every other name becomes a ``LicenseRef-…`` that the SPDX document defines in
``hasExtractedLicensingInfos`` and the CycloneDX document carries as a license name.

The SPDX license list comes from ``license-expression`` (which both cyclonedx-python-lib and spdx-tools use
to validate), so an id produced here is one those validators accept.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

from license_expression import get_spdx_licensing

from aegis_plugin.core.sbom import card as card_facts
from aegis_plugin.core.sbom.inventory import Inventory

_LICENSING = get_spdx_licensing()

# DEP-5 families whose version is spelled differently in SPDX ids (`GPL-2+` is `GPL-2.0-or-later`).
_VERSIONED_FAMILIES = {"GPL": "GPL", "LGPL": "LGPL", "AGPL": "AGPL", "GFDL": "GFDL"}
_FAMILY_VERSION = {"1": "1.0", "2": "2.0", "3": "3.0"}
# DEP-5 names that are an SPDX license under another name.
_DEP5_ALIASES = {"expat": "MIT", "cc0": "CC0-1.0", "psf-2": "PSF-2.0", "zope-2.1": "ZPL-2.1"}
# `<license> with <name> exception` in DEP-5 -> the SPDX exception id.
_DEP5_EXCEPTIONS = {
    "gcc-3.1": "GCC-exception-3.1",
    "classpath": "Classpath-exception-2.0",
    "font": "Font-exception-2.0",
    "bison": "Bison-exception-2.2",
    "libtool": "Libtool-exception",
    "llvm": "LLVM-exception",
}
_FAMILY = re.compile(r"^(?P<family>[A-Za-z]+)-(?P<version>\d+(?:\.\d+)?)(?P<plus>\+)?$")
_WITH = re.compile(r"^(?P<license>\S+)\s+with\s+(?P<exception>\S+)\s+exception$", re.IGNORECASE)
_OPERATOR = re.compile(r"\s+(or|and)\s+", re.IGNORECASE)


def spdx_expression(text: str) -> Optional[str]:
    """``text`` in SPDX's canonical spelling if it is a valid expression of SPDX-list ids, else None.

    Deprecated ids are replaced (``GPL-2.0+`` -> ``GPL-2.0-or-later``); ``LicenseRef-…`` is not accepted,
    since only this package defines the document's license references.
    """
    text = text.strip()
    if not text or len(text) > 200 or "\n" in text or "LicenseRef-" in text or "DocumentRef-" in text:
        return None
    try:
        info = _LICENSING.validate(text)
    except Exception:  # license-expression raises on some malformed input instead of reporting it
        return None
    if info.errors or not info.normalized_expression:
        return None
    return str(info.normalized_expression)


def is_single_id(expression: str) -> bool:
    return " " not in expression


def dep5_atom(name: str) -> Optional[str]:
    """The SPDX expression for one DEP-5 license name, or None when there is no obvious one."""
    name = name.strip()
    with_match = _WITH.match(name)
    if with_match:
        license_id = dep5_atom(with_match.group("license"))
        exception = _DEP5_EXCEPTIONS.get(with_match.group("exception").lower())
        if license_id is None or exception is None or not is_single_id(license_id):
            return None
        return spdx_expression(f"{license_id} WITH {exception}")
    family = _FAMILY.match(name)
    if family and family.group("family").upper() in _VERSIONED_FAMILIES:
        version = _FAMILY_VERSION.get(family.group("version"), family.group("version"))
        suffix = "or-later" if family.group("plus") else "only"
        return spdx_expression(f"{_VERSIONED_FAMILIES[family.group('family').upper()]}-{version}-{suffix}")
    if name.endswith("+"):  # "or later" of a license SPDX does not version that way
        return None
    alias = _DEP5_ALIASES.get(name.lower())
    if alias:
        return alias
    expression = spdx_expression(name)
    return expression if expression is not None and is_single_id(expression) else None


def _dep5_parts(entry: str) -> List[str]:
    """``GPL-2+ or Artistic-2.0`` -> ["GPL-2+", "or", "Artistic-2.0"]; a comma-separated entry is one atom."""
    if "," in entry:
        return [entry.strip()]
    parts = _OPERATOR.split(entry.strip())
    return [p.lower() if i % 2 else p.strip() for i, p in enumerate(parts)]


def _map_entry(entry: str, unknown: Callable[[str], Optional[str]]) -> Optional[str]:
    parts = _dep5_parts(entry)
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(part.upper())
            continue
        atom = dep5_atom(part)
        if atom is None:
            atom = unknown(part)
            if atom is None:
                return None
        out.append(atom)
    return " ".join(out)


def dep5_entry(entry: str) -> Optional[str]:
    """The SPDX expression for one DEP-5 ``License:`` value, or None if any license in it has no SPDX id."""
    expression = _map_entry(entry, lambda part: None)
    return None if expression is None else spdx_expression(expression)


@dataclass(frozen=True)
class ExtractedLicense:
    license_id: str  # LicenseRef-…
    name: str
    text: str


class LicenseRefs:
    """The ``LicenseRef-…`` ids one document uses, each defined once (id -> name and text)."""

    def __init__(self) -> None:
        self._by_key: Dict[str, ExtractedLicense] = {}
        self._ids: Dict[str, str] = {}

    def ref(self, prefix: str, name: str, text: str) -> str:
        key = f"{prefix}\0{name}"
        known = self._by_key.get(key)
        if known is not None:
            return known.license_id
        license_id = _ref_id(prefix, name)
        if license_id in self._ids and self._ids[license_id] != key:
            license_id = f"{license_id}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
        self._ids[license_id] = key
        self._by_key[key] = ExtractedLicense(license_id, _short_name(name), text)
        return license_id

    def extracted(self) -> List[ExtractedLicense]:
        return sorted(self._by_key.values(), key=lambda e: e.license_id)


def _ref_id(prefix: str, name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", name).strip("-.")
    if not slug or len(slug) > 48 or "\n" in name.strip():
        slug = f"{slug[:40].rstrip('-.')}-{hashlib.sha256(name.encode()).hexdigest()[:8]}".lstrip("-")
    return f"LicenseRef-{prefix}-{slug}"


def _short_name(name: str) -> str:
    first = name.strip().splitlines()[0].strip() if name.strip() else name
    return first if len(first) <= 80 else first[:77].rstrip() + "..."


def debian_expression(
    licenses: Sequence[str], refs: LicenseRefs, package: str = "", copyright_file: str = ""
) -> Optional[str]:
    """The package's declared license: every DEP-5 entry ANDed (a copyright file's licenses all apply to
    some of its files). Names without an SPDX id become LicenseRefs. A free-form copyright file that names no
    license a program can read (libcrypt1's) declares the terms it states: a LicenseRef to that file. None
    when the package ships no copyright file."""
    if not licenses and copyright_file:
        return refs.ref("debian", f"{package} copyright", _copyright_file_text(copyright_file))
    entries = sorted(set(
        expression
        for expression in (
            _map_entry(entry, lambda part: refs.ref("debian", part, _debian_ref_text(part)))
            for entry in sorted(set(licenses))
        )
        if expression
    ))
    if not entries:
        return None
    if len(entries) > 1:
        entries = [f"({e})" if " OR " in e else e for e in entries]
    return " AND ".join(entries)


def _debian_ref_text(name: str) -> str:
    return (
        f"The license named {name!r} in the machine-readable (DEP-5) copyright file of the Debian package "
        f"(/usr/share/doc/<package>/copyright in the image), which holds its text; it has no obvious SPDX "
        f"license list identifier."
    )


def _copyright_file_text(path: str) -> str:
    return (
        f"The license terms stated in {path} in the image: a free-form copyright file that names no license "
        f"by a machine-readable (DEP-5) short name or a file of /usr/share/common-licenses/."
    )


def conjunction(expressions: Sequence[Optional[str]]) -> Optional[str]:
    """The license of an aggregate (an image): every part's expression ANDed, each distinct term once, sorted;
    None when any part's license is unknown (the aggregate's is then unknown too)."""
    if not expressions or any(e is None for e in expressions):
        return None
    terms = set()
    for expression in expressions:
        parsed = _LICENSING.parse(expression)
        parts = parsed.args if isinstance(parsed, _LICENSING.AND) else (parsed,)
        terms.update(f"({p.render()})" if isinstance(p, _LICENSING.OR) else p.render() for p in parts)
    return " AND ".join(sorted(terms))


def image_concluded(inv: Inventory, refs: LicenseRefs) -> Optional[str]:
    """The image's concluded license: its parts' (every Debian package, distribution, the model and the app)."""
    return conjunction([
        *(debian_expression(p.licenses, refs, p.name, p.copyright_file) for p in inv.debian),
        *(declared_expression(d.license, "pypi", refs) for d in inv.python),
        declared_expression(card_facts.facts(inv.model.card).license, "model", refs),  # the model's and the app's
    ])


def declared_expression(text: Optional[str], prefix: str, refs: LicenseRefs) -> Optional[str]:
    """A declared license that is an SPDX expression or free text (Python metadata, a model card)."""
    if text is None or not text.strip():
        return None
    expression = spdx_expression(text)
    if expression is not None:
        return expression
    return refs.ref(prefix, text.strip(), text.strip())
