"""What both documents share: identifiers (purls, references), times, canonical JSON, derived UUIDs."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timezone
from typing import Any, Optional

from packageurl import PackageURL

from aegis_plugin.core.sbom.inventory import DebianPackage, Image, Inventory, PythonDist

# Every UUID the documents carry is a uuid5 in this namespace, so no two tools' documents collide.
AEGIS_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://aegis.invalid/sbom")
DEBIAN_DISTRO = "debian-12"
TOOL_NAME = "aegis"
PROPERTY_PREFIX = "aegis"
# SPDX's copyright text for a component found to carry no notice (every text file of a distribution was read).
NO_NOTICE = "NONE"


def debian_purl(pkg: DebianPackage) -> str:
    """``pkg:deb/debian/<name>@<version>?arch=<arch>&distro=debian-12`` (qualifiers sorted, as purl says)."""
    return PackageURL(
        type="deb", namespace="debian", name=pkg.name, version=pkg.version,
        qualifiers={"arch": pkg.architecture, "distro": DEBIAN_DISTRO},
    ).to_string()


def python_purl(dist: PythonDist) -> str:
    return PackageURL(type="pypi", name=dist.name, version=dist.version).to_string()


def image_purl(image: Image, manifest_digest: Optional[str] = None) -> str:
    """An ``oci`` purl's version is the manifest digest, which only a document written after the image can
    name (the SPDX 2.3 SBOM travels inside the image, and CycloneDX is written beside it): without it, this
    purl names the image by its last repository component with ``tag`` and ``arch`` qualifiers and no
    version, and whoever pushes the image by digest states the digest next to the SBOM (an attestation's
    subject)."""
    name = image.name.rsplit("/", 1)[-1].lower()
    return PackageURL(type="oci", name=name, version=manifest_digest,
                      qualifiers={"tag": image.version, "arch": image.architecture}).to_string()


def image_ref(inv: Inventory) -> str:
    return f"image:{inv.image.name}@{inv.image.version}"


def model_ref(inv: Inventory) -> str:
    return f"model:{inv.model.model_id}@{inv.model.version}"


def model_card_ref(inv: Inventory) -> str:
    return f"model-card:{inv.model.model_id}@{inv.model.version}"


def app_ref(inv: Inventory) -> str:
    return f"app:{inv.image.name}@{inv.image.version}"


def app_name(inv: Inventory) -> str:
    return f"{inv.model.model_id}-server"


def file_ref(path: str) -> str:
    return f"file:{path}"


def created_datetime(inv: Inventory) -> datetime:
    return datetime.fromtimestamp(inv.image.created, tz=timezone.utc)


def created_iso(inv: Inventory) -> str:
    """``YYYY-MM-DDThh:mm:ssZ``, the form SPDX requires (and CycloneDX accepts)."""
    return created_datetime(inv).strftime("%Y-%m-%dT%H:%M:%SZ")


def canonical_json(document: Any) -> bytes:
    """Sorted keys, two-space indentation, UTF-8, one trailing newline: the bytes depend only on the data."""
    return (json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False, separators=(",", ": ")) + "\n").encode(
        "utf-8"
    )


def content_uuid(kind: str, document: Any) -> uuid.UUID:
    """A uuid5 of the document's canonical bytes (taken without the field that will hold the UUID)."""
    digest = hashlib.sha256(canonical_json(document)).hexdigest()
    return uuid.uuid5(AEGIS_NAMESPACE, f"{kind}:sha256:{digest}")
