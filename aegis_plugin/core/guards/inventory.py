"""The packages of an image, read from its CycloneDX SBOM: what the guards check."""
from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass
from typing import List, Optional


@dataclass(frozen=True)
class Package:
    ecosystem: str  # OSV's: "PyPI" or "Debian:12"
    name: str
    version: str
    purl: str
    source: Optional[str] = None  # Debian: the source package (advisories are about sources)
    source_version: Optional[str] = None


@dataclass(frozen=True)
class Inventory:
    image_purl: str
    packages: List[Package]

    def python(self) -> List[Package]:
        return [p for p in self.packages if p.ecosystem == "PyPI"]

    def debian(self) -> List[Package]:
        return [p for p in self.packages if p.ecosystem.startswith("Debian")]


def from_cyclonedx(data: bytes) -> Inventory:
    bom = json.loads(data)
    packages = []
    for component in bom.get("components") or []:
        purl = component.get("purl") or ""
        properties = {p["name"]: p["value"] for p in component.get("properties") or []}
        if purl.startswith("pkg:pypi/"):
            packages.append(Package("PyPI", component["name"], component["version"], purl))
        elif purl.startswith("pkg:deb/debian/"):
            query = urllib.parse.parse_qs(purl.split("?", 1)[1] if "?" in purl else "")
            distro = (query.get("distro") or ["debian-12"])[0]
            release = distro.split("-", 1)[1] if "-" in distro else ""
            packages.append(Package(f"Debian:{release}" if release else "Debian", component["name"],
                                    component["version"], purl, properties.get("aegis:debian:source"),
                                    properties.get("aegis:debian:source_version")))
    image = (bom.get("metadata") or {}).get("component") or {}
    return Inventory(image.get("purl") or "", sorted(packages, key=lambda p: (p.ecosystem, p.name)))
