"""For the tests: the inputs `pants publish` hands the publisher, for a small image; a signing key made here
(no cosign needed); and a way to put what anyone with push access could put into a `.sig`/`.att`/`.msig`."""
from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import List, Sequence

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from aegis_plugin.core.registry.client import Registry
from aegis_plugin.core.registry.push import push_blobs
from aegis_plugin.core.registry.testutil import make_layout
from aegis_plugin.core.sign import cosign, keys


def publish_inputs(tmp_path: Path, content: bytes, name: str = "oci", model_artifact: bool = False,
                   platforms: Sequence[str] = ()) -> list:
    """The publisher's arguments for a layout of one image or, with `platforms`, an image index: each
    platform's SBOM names its platform, so that a test can tell them apart."""
    image = make_layout(tmp_path / name, content, model_artifact=model_artifact, platforms=platforms)
    sboms = []
    for platform in platforms or [None]:
        path = tmp_path / f"sbom-{(platform or 'image').replace('/', '-')}.json"
        path.write_text(json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.6",
                                    **({"metadata": {"properties": [{"name": "platform", "value": platform}]}}
                                       if platform else {})}))
        sboms += ["--sbom", f"{platform}={path}" if platform else str(path)]
    (tmp_path / "provenance.json").write_text(json.dumps({
        "builder_id": "https://example.invalid/builder", "target": "models/fraud:fraud", "version": "1.0.0",
        "source_url": "https://example.invalid/repo", "git_sha": "ab" * 20,
        "materials": [{"uri": "3rdparty/python/runtime.lock", "sha256": "cd" * 32}],
        "invocation": ["pants", "publish", "models/fraud:fraud"]}))
    return ["--layout", image.layout, *sboms, "--provenance", str(tmp_path / "provenance.json")]


def signing_key_env(key: ec.EllipticCurvePrivateKey) -> dict:
    """The publisher's environment for signing with `key` (a plain PEM)."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return {"AEGIS_SIGNING_KEY": pem.decode()}


def write_public_key(key: ec.EllipticCurvePrivateKey, path: Path) -> str:
    path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    return str(path)


def simple_signed(data: bytes, key: ec.EllipticCurvePrivateKey) -> cosign.Layer:
    """A `.sig` layer: `data` signed with `key`, whatever `data` is."""
    signature = base64.b64encode(keys.sign(key, data)).decode()
    return cosign.Layer(cosign.SIMPLE_SIGNING, data, {cosign.SIGNATURE_ANNOTATION: signature})


def attached_layers(registry: Registry, repository: str, image_digest: str, suffix: str) -> List[cosign.Layer]:
    _, manifest, _ = registry.get_manifest(repository, cosign.tag_for(image_digest, suffix))  # type: ignore[misc]
    return cosign.existing_layers(manifest, lambda d: registry.get_blob(repository, d))


def put_attached(registry: Registry, repository: str, image_digest: str, suffix: str,
                 layers: List[cosign.Layer]) -> str:
    """Points the image's `.<suffix>` tag at an image of exactly `layers`; returns its manifest digest."""
    artifact = cosign.artifact(layers)
    push_blobs(registry, repository, dict(artifact.blobs))
    return registry.put_manifest(repository, cosign.tag_for(image_digest, suffix), cosign.MANIFEST, artifact.manifest)
