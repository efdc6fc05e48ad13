"""Keyless verification against a local Sigstore (CA and log of the tests' own)."""
from __future__ import annotations

import dataclasses
import datetime
import json
import re
from pathlib import Path

import pytest

from aegis_plugin.core.sign import cosign
from aegis_plugin.core.sign.identity import IdentityError, TrustedRoot, verify_signer
from aegis_plugin.core.sign.signer import KeylessSigner
from aegis_plugin.core.sign.testutil import LocalSigstore
from aegis_plugin.core.sign.tlog import LogEntry

IDENTITY = "https://github.com/acme/models/.github/workflows/main.yml@refs/heads/main"
ISSUER = "https://token.actions.githubusercontent.com"


def _signed(sigstore: LocalSigstore, identity: str = IDENTITY):
    signer = KeylessSigner(sigstore.session(identity, ISSUER), sigstore.chain_pem())
    layer = cosign.signature_layer("registry.example/ml/fraud", "sha256:" + "a" * 64, signer)
    return (layer.annotations[cosign.CERTIFICATE_ANNOTATION].encode(),
            LogEntry.from_cosign(layer.annotations[cosign.BUNDLE_ANNOTATION]), layer)


def test_a_keyless_signature_is_checked_end_to_end(tmp_path: Path) -> None:
    sigstore = LocalSigstore(tmp_path)
    trust = TrustedRoot.from_json(sigstore.trusted_root().read_bytes(), "trusted_root.json")
    certificate, entry, layer = _signed(sigstore)
    verify_signer(trust, certificate, entry, IDENTITY, ISSUER)
    assert entry.signed_hash() == __import__("hashlib").sha256(layer.data).hexdigest()
    assert layer.annotations[cosign.CHAIN_ANNOTATION].count("BEGIN CERTIFICATE") == 2

    with pytest.raises(IdentityError, match=f"signed by '{IDENTITY}', not 'someone@else'"):
        verify_signer(trust, certificate, entry, "someone@else", ISSUER)
    with pytest.raises(IdentityError, match="vouched for by 'https://token.actions.githubusercontent.com', not 'x'"):
        verify_signer(trust, certificate, entry, IDENTITY, "x")
    forged = dataclasses.replace(entry, integrated_time=entry.integrated_time + 1)
    with pytest.raises(IdentityError, match="signed entry timestamp does not verify"):
        verify_signer(trust, certificate, forged, IDENTITY, ISSUER)
    other_certificate, _, _ = _signed(sigstore)
    with pytest.raises(IdentityError, match="names another certificate"):
        verify_signer(trust, other_certificate, entry, IDENTITY, ISSUER)


def test_another_sigstore_is_not_trusted(tmp_path: Path) -> None:
    ours, theirs = LocalSigstore(tmp_path / "ours"), LocalSigstore(tmp_path / "theirs")
    trust = TrustedRoot.from_json(ours.trusted_root().read_bytes(), "trusted_root.json")
    certificate, entry, _ = _signed(theirs)
    with pytest.raises(IdentityError, match="not issued by a trusted certificate authority"):
        verify_signer(trust, certificate, entry, IDENTITY, ISSUER)


def test_trusted_roots(tmp_path: Path) -> None:
    production = TrustedRoot.sigstore_production()
    assert production.certificate_authorities and production.log_keys
    with pytest.raises(IdentityError, match="x.json: the trusted root names no certificate authority"):
        TrustedRoot.from_json(json.dumps({"tlogs": []}).encode(), "x.json")
    with pytest.raises(IdentityError, match="y.json: not a Sigstore trusted root"):
        TrustedRoot.from_json(b"[]", "y.json")


HOUR, DAY = datetime.timedelta(hours=1), datetime.timedelta(days=1)


@pytest.mark.parametrize("root, intermediate, message", [
    ({}, {"ca": False}, "'CN=aegis-test-fulcio-intermediate' of the signing chain is not a CA"),
    ({"ca": False}, {}, "'CN=aegis-test-fulcio-root' of the signing chain is not a CA"),
    ({}, {"key_cert_sign": False},
     "'CN=aegis-test-fulcio-intermediate' of the signing chain may not sign certificates"),
    ({"path_length": 0}, {}, "'CN=aegis-test-fulcio-root' allows 0 CA(s) below it (pathLen), the signing chain has 1"),
    ({}, {"valid": (-2 * DAY, -DAY)},
     "'CN=aegis-test-fulcio-intermediate' was not valid when the signature was logged"),
    ({}, {"valid": (HOUR, DAY)}, "'CN=aegis-test-fulcio-intermediate' was not valid when the signature was logged"),
    ({"valid": (-2 * DAY, -DAY)}, {}, "'CN=aegis-test-fulcio-root' was not valid when the signature was logged"),
])
def test_a_chain_through_an_unfit_certificate_authority_is_refused(tmp_path: Path, root, intermediate,
                                                                   message: str) -> None:
    sigstore = LocalSigstore(tmp_path, root=root, intermediate=intermediate)
    trust = TrustedRoot.from_json(sigstore.trusted_root().read_bytes(), "trusted_root.json")
    certificate, entry, _ = _signed(sigstore)
    with pytest.raises(IdentityError, match=re.escape(message)):
        verify_signer(trust, certificate, entry, IDENTITY, ISSUER)


def test_the_chain_is_checked_at_the_signing_time(tmp_path: Path) -> None:
    """An intermediate that has expired since, or a pathLen of 0 right above the leaf (as Sigstore's own
    intermediate has), is fine: what counts is that each CA was valid when the log recorded the signature."""
    sigstore = LocalSigstore(tmp_path, root={"valid": (-4 * DAY, DAY)},
                              intermediate={"valid": (-3 * DAY, -DAY), "path_length": 0})
    trust = TrustedRoot.from_json(sigstore.trusted_root().read_bytes(), "trusted_root.json")
    sigstore.clock = -2 * DAY
    certificate, entry, _ = _signed(sigstore)
    assert verify_signer(trust, certificate, entry, IDENTITY, ISSUER)
    # Logged two days later (now), the same chain is refused.
    moved = dataclasses.replace(entry, integrated_time=entry.integrated_time + 2 * 86400)
    with pytest.raises(IdentityError, match="was not valid when the signature was logged"):
        verify_signer(trust, certificate, moved, IDENTITY, ISSUER)
