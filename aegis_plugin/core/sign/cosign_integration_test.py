"""Signatures and attestations in a real registry, verified by the real cosign (offline, key-based)."""
from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path
from typing import Iterator, Tuple

import pytest

from aegis_plugin.core.registry.client import Registry
from aegis_plugin.core.registry.push import LayoutImage, push_image
from aegis_plugin.core.registry.reference import Reference, parse
from aegis_plugin.core.registry.testutil import make_layout, running_registry
from aegis_plugin.core.sign import cosign, dsse, keys, testutil
from aegis_plugin.core.sign.attach import attach
from aegis_plugin.core.sign.signer import KeySigner

PASSWORD = b"correct horse"


@pytest.fixture(scope="module")
def cosign_binary() -> str:
    return testutil.cosign_binary()


@pytest.fixture(scope="module")
def key_pair(cosign_binary: str, tmp_path_factory) -> Path:
    """A key pair made by cosign itself, in its encrypted format."""
    return testutil.generate_key_pair(cosign_binary, tmp_path_factory.mktemp("keys"), PASSWORD.decode()).parent


@contextlib.contextmanager
def pushed_image(tmp_path: Path) -> Iterator[Tuple[Registry, Reference, LayoutImage]]:
    """A fresh registry holding one small image, tagged 1.0.0."""
    image = make_layout(tmp_path / "oci", b"weights")
    with running_registry(tmp_path / "registry") as address:
        target = parse(f"{address}/ml/fraud:1.0.0")
        registry = Registry.for_reference(target)
        push_image(registry, image, target)
        yield registry, target, image


def verify(cosign_binary: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([cosign_binary, *args, "--insecure-ignore-tlog=true", "--allow-http-registry"],
                          capture_output=True, text=True, timeout=120)


def test_cosign_verifies_our_signature_and_attestations(cosign_binary: str, key_pair: Path, tmp_path: Path) -> None:
    key = keys.load_private_key((key_pair / "cosign.key").read_bytes(), PASSWORD, "cosign.key")
    with pushed_image(tmp_path) as (registry, target, image):
        signed = f"{target.name}@{image.digest}"
        layer = cosign.signature_layer(target.name, image.digest, KeySigner(key))
        assert attach(registry, target.repository, image.descriptor, "sig", layer)
        assert not attach(registry, target.repository, image.descriptor, "sig", layer)  # idempotent

        sbom = {"bomFormat": "CycloneDX", "specVersion": "1.6", "components": []}
        attach(registry, target.repository, image.descriptor, "att",
               cosign.attestation_layer(target.name, image.digest, dsse.CYCLONEDX, sbom, KeySigner(key)))
        provenance = {"buildDefinition": {"buildType": "https://aegis.invalid/pants-package/v1"}}
        attach(registry, target.repository, image.descriptor, "att",
               cosign.attestation_layer(target.name, image.digest, dsse.SLSA_PROVENANCE_V1, provenance, KeySigner(key)))

        result = verify(cosign_binary, "verify", "--key", str(key_pair / "cosign.pub"), signed)
        assert result.returncode == 0, result.stderr
        payload = json.loads(result.stdout)[0]
        assert payload["critical"]["image"]["docker-manifest-digest"] == image.digest
        for kind in ("cyclonedx", "slsaprovenance1"):
            result = verify(cosign_binary, "verify-attestation", "--key", str(key_pair / "cosign.pub"),
                            "--type", kind, signed)
            assert result.returncode == 0, (kind, result.stderr)


def test_cosign_rejects_a_wrong_key_and_a_tampered_signature(cosign_binary: str, key_pair: Path,
                                                              tmp_path: Path) -> None:
    key = keys.load_private_key((key_pair / "cosign.key").read_bytes(), PASSWORD, "cosign.key")
    other = testutil.generate_key_pair(cosign_binary, tmp_path / "other", "").parent
    with pushed_image(tmp_path) as (registry, target, image):
        signed = f"{target.name}@{image.digest}"
        # A signature over another digest's payload: cosign must refuse it for this image.
        forged = cosign.signature_layer(target.name, "sha256:" + "0" * 64, KeySigner(key))
        tampered = cosign.Layer(cosign.SIMPLE_SIGNING, cosign.simple_signing_payload(target.name, image.digest),
                                forged.annotations)
        attach(registry, target.repository, image.descriptor, "sig", tampered)
        assert verify(cosign_binary, "verify", "--key", str(key_pair / "cosign.pub"), signed).returncode != 0

        attach(registry, target.repository, image.descriptor, "sig", cosign.signature_layer(target.name, image.digest, KeySigner(key)))
        assert verify(cosign_binary, "verify", "--key", str(key_pair / "cosign.pub"), signed).returncode == 0
        assert verify(cosign_binary, "verify", "--key", str(other / "cosign.pub"), signed).returncode != 0


def test_a_cosign_key_with_the_wrong_password(key_pair: Path) -> None:
    with pytest.raises(keys.SigningKeyError, match="cosign.key: wrong password for the encrypted cosign key"):
        keys.load_private_key((key_pair / "cosign.key").read_bytes(), b"wrong", "cosign.key")
    with pytest.raises(keys.SigningKeyError, match="needs its password"):
        keys.load_private_key((key_pair / "cosign.key").read_bytes(), None, "cosign.key")
