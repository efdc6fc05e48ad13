"""Rekor (v1) transparency-log entries, as a Sigstore bundle holds them and as cosign annotates them.

An entry's "signed entry timestamp" (SET) is the log's signature over the entry's canonical JSON
(`body`, `integratedTime`, `logID`, `logIndex`): checked against the log's public key, it proves offline
that the log recorded the body at that time. The body names what was signed: a `hashedrekord` the SHA-256
of the payload, a `dsse` the SHA-256 of the envelope; both name the signing certificate.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Dict, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from aegis_plugin.core.errors import AegisError


class LogEntryError(AegisError):
    pass


@dataclass(frozen=True)
class LogEntry:
    body: bytes  # the canonicalized entry (JSON)
    integrated_time: int
    log_id: str  # hex SHA-256 of the log's public key
    log_index: int
    signed_entry_timestamp: bytes

    @classmethod
    def from_bundle(cls, bundle: Mapping[str, Any]) -> "LogEntry":
        """The first `tlogEntries` entry of a Sigstore bundle (JSON form); it must carry an inclusion promise."""
        try:
            entry = bundle["verificationMaterial"]["tlogEntries"][0]
            return cls(
                body=base64.b64decode(entry["canonicalizedBody"]),
                integrated_time=int(entry["integratedTime"]),
                log_id=base64.b64decode(entry["logId"]["keyId"]).hex(),
                log_index=int(entry["logIndex"]),
                signed_entry_timestamp=base64.b64decode(entry["inclusionPromise"]["signedEntryTimestamp"]),
            )
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise LogEntryError(f"the bundle has no Rekor v1 entry with a signed entry timestamp ({e!r})") from None

    @classmethod
    def from_cosign(cls, annotation: str) -> "LogEntry":
        """From cosign's `dev.sigstore.cosign/bundle` annotation."""
        try:
            data = json.loads(annotation)
            payload = data["Payload"]
            return cls(
                body=base64.b64decode(payload["body"]),
                integrated_time=int(payload["integratedTime"]),
                log_id=str(payload["logID"]),
                log_index=int(payload["logIndex"]),
                signed_entry_timestamp=base64.b64decode(data["SignedEntryTimestamp"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise LogEntryError(f"not a cosign transparency-log bundle ({e!r})") from None

    def cosign_annotation(self) -> str:
        return json.dumps({
            "SignedEntryTimestamp": base64.b64encode(self.signed_entry_timestamp).decode(),
            "Payload": {
                "body": base64.b64encode(self.body).decode(),
                "integratedTime": self.integrated_time,
                "logIndex": self.log_index,
                "logID": self.log_id,
            },
        }, sort_keys=True, separators=(",", ":"))

    def signed_data(self) -> bytes:
        """What the SET signs: RFC 8785 canonical JSON (for these keys: sorted, compact, ASCII)."""
        return json.dumps({
            "body": base64.b64encode(self.body).decode(),
            "integratedTime": self.integrated_time,
            "logID": self.log_id,
            "logIndex": self.log_index,
        }, sort_keys=True, separators=(",", ":")).encode()

    def verify_set(self, log_keys: Mapping[str, ec.EllipticCurvePublicKey]) -> None:
        key = log_keys.get(self.log_id)
        if key is None:
            raise LogEntryError(f"the entry is from an unknown transparency log ({self.log_id[:16]}…)")
        try:
            key.verify(self.signed_entry_timestamp, self.signed_data(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise LogEntryError("the transparency log's signed entry timestamp does not verify") from None

    def _spec(self) -> Dict[str, Any]:
        try:
            body = json.loads(self.body)
            return {"kind": body["kind"], **body["spec"]}
        except (KeyError, TypeError, ValueError) as e:
            raise LogEntryError(f"unreadable transparency-log entry body ({e!r})") from None

    def signed_hash(self) -> str:
        """The hex SHA-256 the entry records: of the payload (hashedrekord) or of the envelope (dsse)."""
        spec = self._spec()
        if spec["kind"] == "hashedrekord":
            return spec["data"]["hash"]["value"]
        if spec["kind"] == "dsse":
            return spec["envelopeHash"]["value"]
        raise LogEntryError(f"unexpected transparency-log entry kind {spec['kind']!r}")

    def payload_hash(self) -> str:
        """A dsse entry's hex SHA-256 of the envelope's payload (the statement)."""
        spec = self._spec()
        if spec["kind"] != "dsse":
            raise LogEntryError(f"expected a dsse entry, not {spec['kind']!r}")
        return spec["payloadHash"]["value"]

    def certificate_pem(self) -> bytes:
        """The signing certificate the entry names."""
        spec = self._spec()
        if spec["kind"] == "hashedrekord":
            return base64.b64decode(spec["signature"]["publicKey"]["content"])
        if spec["kind"] == "dsse":
            return base64.b64decode(spec["signatures"][0]["verifier"])
        raise LogEntryError(f"unexpected transparency-log entry kind {spec['kind']!r}")
