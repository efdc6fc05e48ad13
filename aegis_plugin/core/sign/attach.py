"""Attach a signature or an attestation to an image in a registry, the way cosign does (its tag schema),
keeping the ones already attached: signing again with the same key and payload changes nothing."""
from __future__ import annotations

from typing import Mapping

from aegis_plugin.core.registry.client import Registry
from aegis_plugin.core.registry.push import push_blobs
from aegis_plugin.core.sign import cosign


def attach(registry: Registry, repository: str, image: Mapping[str, object], suffix: str, layer: cosign.Layer) -> bool:
    """Adds `layer` to the `sha256-<hex>.<suffix>` image of `repository` for the image of descriptor `image`
    (mediaType, digest, size); False if it was there already."""
    tag = cosign.tag_for(str(image["digest"]), suffix)
    found = registry.get_manifest(repository, tag)
    existing = cosign.existing_layers(found[1], lambda d: registry.get_blob(repository, d)) if found else []
    layers, changed = cosign.merged(existing, layer)
    if not changed:
        return False
    artifact = cosign.artifact(layers, subject=image)
    push_blobs(registry, repository, dict(artifact.blobs))
    registry.put_manifest(repository, tag, cosign.MANIFEST, artifact.manifest)
    return True
