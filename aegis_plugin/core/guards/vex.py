"""Accepted findings, from VEX documents: OpenVEX (https://openvex.dev) and CycloneDX VEX.

A finding is accepted only by a statement that names its vulnerability (the advisory id or an alias such as
the CVE), the product (the package's purl, with or without its version, or the image's), says it does not
affect it (OpenVEX `not_affected`; CycloneDX `not_affected` or `false_positive`) and justifies that (a
justification label, an impact statement or a detail). An acceptance may expire: OpenVEX `"expires"` on the
statement, CycloneDX property `aegis:expires` on the vulnerability (YYYY-MM-DD); the scan date decides.
Unjustified or expired acceptances are findings of their own, and accept nothing.
"""
from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import Any, FrozenSet, List, Mapping, Optional, Sequence, Tuple, Union

from aegis_plugin.core.errors import AegisError

EXPIRES_PROPERTY = "aegis:expires"


class VexError(AegisError):
    pass


@dataclass(frozen=True)
class Acceptance:
    vulnerabilities: FrozenSet[str]
    products: FrozenSet[str]  # purls, as written (with or without @version)
    justification: str
    expires: Optional[datetime.date]
    origin: str  # "<file>: statement N"

    def covers(self, ids: Sequence[str], purl: str, image_purl: str = "") -> bool:
        return bool(self.vulnerabilities.intersection(ids)) and any(
            _same_product(product, purl) or (image_purl and _same_product(product, image_purl))
            for product in self.products
        )


def _strip(purl: str) -> Tuple[str, Optional[str]]:
    """`pkg:pypi/numpy@1.26.4?x=y` -> ("pkg:pypi/numpy", "1.26.4")."""
    base = purl.split("?", 1)[0].split("#", 1)[0]
    name, _, version = base.partition("@")
    return name.lower(), version or None


def _same_product(statement_purl: str, package_purl: str) -> bool:
    name, version = _strip(statement_purl)
    other_name, other_version = _strip(package_purl)
    return name == other_name and (version is None or version == other_version)


def load(data: bytes, origin: str) -> Tuple[List[Acceptance], List[str]]:
    """(acceptances, problems): problems are statements that try to accept findings but may not."""
    try:
        document = json.loads(data)
    except ValueError as e:
        raise VexError(f"{origin}: not JSON ({e})") from None
    if not isinstance(document, dict):
        raise VexError(f"{origin}: not a VEX document")
    if "statements" in document and "openvex" in str(document.get("@context", "")):
        results = _openvex(document, origin)
    elif document.get("bomFormat") == "CycloneDX":
        results = _cyclonedx(document, origin)
    else:
        raise VexError(f"{origin}: neither OpenVEX (@context openvex, statements) nor CycloneDX VEX (bomFormat)")
    return [r for r in results if isinstance(r, Acceptance)], [r for r in results if isinstance(r, str)]


def _openvex(document: Mapping[str, Any], origin: str) -> List[Union[Acceptance, str]]:
    results: List[Union[Acceptance, str]] = []
    for index, statement in enumerate(document.get("statements") or [], 1):
        where = f"{origin}: statement {index}"
        if statement.get("status") != "not_affected":
            continue
        vulnerability = statement.get("vulnerability") or {}
        ids = {str(v) for v in (vulnerability.get("name"), vulnerability.get("@id"), *(vulnerability.get("aliases") or []))
               if v}
        products = set()
        for product in statement.get("products") or []:
            products.add(str(product.get("@id", "")))
            products.update(str(s.get("@id", "")) for s in product.get("subcomponents") or [])
        products.discard("")
        justification = statement.get("justification") or statement.get("impact_statement") or ""
        results.append(_acceptance(ids, products, justification, statement.get("expires"), where))
    return results


def _cyclonedx(document: Mapping[str, Any], origin: str) -> List[Union[Acceptance, str]]:
    results: List[Union[Acceptance, str]] = []
    for index, vulnerability in enumerate(document.get("vulnerabilities") or [], 1):
        where = f"{origin}: vulnerability {index}"
        analysis = vulnerability.get("analysis") or {}
        if analysis.get("state") not in ("not_affected", "false_positive"):
            continue
        ids = {str(vulnerability.get("id", ""))} | {str(r.get("id", "")) for r in vulnerability.get("references") or []}
        ids.discard("")
        products = {str(a.get("ref", "")) for a in vulnerability.get("affects") or []} - {""}
        justification = analysis.get("justification") or analysis.get("detail") or ""
        expires = next((p.get("value") for p in vulnerability.get("properties") or []
                        if p.get("name") == EXPIRES_PROPERTY), None)
        results.append(_acceptance(ids, products, justification, expires, where))
    return results


def _acceptance(ids: set, products: set, justification: str, expires: Any, where: str) -> Union[Acceptance, str]:
    """The acceptance a statement makes, or why it may not accept anything."""
    if not ids:
        return f"{where} names no vulnerability"
    if not products:
        return f"{where} ({', '.join(sorted(ids))}) names no product"
    if not str(justification).strip():
        return f"{where} ({', '.join(sorted(ids))}) accepts without a justification"
    expiry = None
    if expires:
        try:
            expiry = datetime.date.fromisoformat(str(expires)[:10])
        except ValueError:
            return f"{where} ({', '.join(sorted(ids))}): unreadable expiry {expires!r} (YYYY-MM-DD)"
    return Acceptance(frozenset(ids), frozenset(products), str(justification), expiry, where)
