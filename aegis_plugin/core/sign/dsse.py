"""In-toto statements signed in DSSE envelopes (what `cosign attest` uploads and `verify-attestation` checks)."""
from __future__ import annotations

import base64
import json
from typing import Any, Mapping, Sequence

from cryptography.hazmat.primitives.asymmetric import ec

from aegis_plugin.core.sign import keys

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
# The predicate types cosign's --type names map to.
CYCLONEDX = "https://cyclonedx.org/bom"
SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"


def statement(subject_name: str, subject_digest: str, predicate_type: str, predicate: Mapping[str, Any],
              also: Sequence[str] = ()) -> bytes:
    """The statement about one image (`subject_digest` is `sha256:<hex>`), and about the artifacts of the same
    build in the same repository whose digests are `also` (a ModelPack model), as canonical JSON bytes."""
    subjects = []
    for digest in (subject_digest, *also):
        algorithm, hex_digest = digest.split(":", 1)
        subjects.append({"name": subject_name, "digest": {algorithm: hex_digest}})
    return _canonical({
        "_type": STATEMENT_TYPE,
        "predicateType": predicate_type,
        "subject": subjects,
        "predicate": predicate,
    })


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what is actually signed."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def envelope(payload: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    signature = keys.sign(key, pae(PAYLOAD_TYPE, payload))
    return _canonical({
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": "", "sig": base64.b64encode(signature).decode()}],
    })


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
