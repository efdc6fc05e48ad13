"""The private parts of sigstore-python (3.x, as locked) and model-signing (1.1.x) that Aegis uses, in one place,
one function each: an upgrade of either library re-checks this module only (the keyless and model-signature
integration tests exercise every function here)."""
from __future__ import annotations

from typing import Any


def rekor_v1_signing_config(trust_config: Any) -> Any:
    """The signing config of `trust_config` (a ClientTrustConfig) on Rekor v1: cosign's tag-schema signatures
    carry the log's signed entry timestamp, which only v1 gives."""
    from sigstore.models import SigningConfig

    return SigningConfig(trust_config.signing_config._inner, tlog_version=1)


def dsse_envelope_bytes(bundle: Any) -> bytes:
    """A DSSE bundle's envelope exactly as Sigstore serialised it for Rekor (the log entry holds its hash)."""
    return bundle._dsse_envelope.to_json().encode()


def statement_bytes(statement: Any) -> bytes:
    """The bytes a sigstore.dsse.Statement was made of."""
    return statement._contents


def envelope_from_json(text: str) -> Any:
    """A sigstore.dsse.Envelope parsed from its JSON."""
    from sigstore.dsse import Envelope

    return Envelope._from_json(text)


def model_signing_statement(manifest: Any) -> Any:
    """model-signing's in-toto statement (a protobuf) of a model manifest, as its Sigstore signer makes it."""
    from model_signing._signing.signing import Payload

    return Payload(manifest).statement.pb
