"""For the tests: the repository's OSV records (written from the public facts of real advisories) and SBOMs
of small images."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Mapping, Sequence, Tuple

# The repository's own database (3rdparty/vulndb/advisories.json): OSV records written from the public facts
# of real advisories (id, aliases, affected range, CVSS vector).
DATABASE = Path(__file__).parents[3] / "3rdparty" / "vulndb" / "advisories.json"
RECORDS = tuple(json.loads(DATABASE.read_text()))
_BY_ID = {r["id"]: r for r in RECORDS}
IDNA = _BY_ID["PYSEC-2024-60"]  # CVE-2024-3651: idna < 3.7, CVSS 6.2
REQUESTS = _BY_ID["PYSEC-2023-74"]  # CVE-2023-32681: requests 2.3.0 to < 2.31.0, CVSS 6.1
PYYAML = _BY_ID["PYSEC-2021-142"]  # CVE-2020-14343: PyYAML < 5.4, CVSS 9.8
OPENSSL = _BY_ID["DSA-5532-1"]  # CVE-2023-5363: bookworm's openssl < 3.0.11-1~deb12u2, CVSS 7.5
NUMPY = _BY_ID["PYSEC-2021-856"]  # CVE-2021-41496: numpy < 1.22.0, no severity in the record


def write_database(directory: Path, records: Iterable[Mapping] = RECORDS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for record in records:
        (directory / f"{record['id']}.json").write_text(json.dumps(record))
    return directory


def sbom(python: Sequence[Tuple[str, str]] = (), debian: Sequence[Tuple[str, str, str]] = (),
         image: str = "pkg:oci/fraud-detector?tag=1.0.0") -> bytes:
    """A CycloneDX SBOM listing PyPI (name, version) and Debian (name, version, source) packages, the way
    `package` writes them."""
    components = [{"type": "library", "name": n, "version": v, "purl": f"pkg:pypi/{n.lower()}@{v}"} for n, v in python]
    components += [{
        "type": "library", "name": n, "version": v, "purl": f"pkg:deb/debian/{n}@{v}?arch=amd64&distro=debian-12",
        "properties": [{"name": "aegis:debian:source", "value": s}, {"name": "aegis:debian:source_version", "value": v}],
    } for n, v, s in debian]
    return json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.6",
                       "metadata": {"component": {"type": "container", "name": "x", "purl": image}},
                       "components": components}).encode()
