"""For the tests: the real cosign (installed by build-support/install-cosign.sh), key pairs made by it, and a
local Sigstore (CA and log) for keyless signing offline."""
from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Tuple

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from aegis_plugin.core.sign import dsse, sigstore_internals
from aegis_plugin.core.sign import identity as identity_module


def cosign_binary() -> str:
    path = os.environ.get("AEGIS_COSIGN", "")
    if not os.access(path, os.X_OK):
        pytest.fail("AEGIS_COSIGN must name the cosign binary: run the tests with build-support/test.sh")
    return path


def generate_key_pair(cosign: str, directory: Path, password: str, prefix: str = "cosign") -> Path:
    """`<prefix>.key` (cosign's encrypted format) and `<prefix>.pub` in `directory`; returns the .key path."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run([cosign, "generate-key-pair", f"--output-key-prefix={prefix}"], cwd=directory, check=True,
                   capture_output=True, env={**os.environ, "COSIGN_PASSWORD": password})
    return directory / f"{prefix}.key"


def unsigned_jwt(claims: dict) -> str:
    """A JWT with these claims and a dummy signature: Fulcio would check it, the code under test only reads it."""
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")
    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2ln"


class LocalSigstore:
    """A Sigstore instance of the tests' own, for keyless signing offline: a Fulcio-like CA (root and
    intermediate) that certifies an identity and its OIDC issuer, and a Rekor-like log key that signs entry
    timestamps. `session()` signs the way `sigstore.sign.Signer` does and returns real sigstore `Bundle`s;
    `trusted_root()` and the PEM files let `aegis verify` and the real cosign check the result."""

    def __init__(self, directory: Path, root: Optional[Mapping[str, Any]] = None,
                 intermediate: Optional[Mapping[str, Any]] = None) -> None:
        """`root` and `intermediate` change how the CA certificates are made (`_ca_certificate`'s options),
        for the tests of chains a verifier must refuse."""
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.root_key, self.intermediate_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        self.log_key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aegis-test-fulcio-root")])
        self.root = _ca_certificate(root_name, root_name, self.root_key.public_key(), self.root_key, now,
                                    **(root or {}))
        intermediate_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aegis-test-fulcio-intermediate")])
        self.intermediate = _ca_certificate(intermediate_name, root_name, self.intermediate_key.public_key(),
                                            self.root_key, now, **(intermediate or {}))
        self.log_index = 0
        self.clock = datetime.timedelta(0)  # signs (certifies and logs) this far from now, to sign "in the past"

    def pem(self, name: str) -> Path:
        """`roots.pem`, `intermediates.pem` or `rekor.pub`, written into the directory."""
        path = self.directory / name
        if name == "roots.pem":
            path.write_bytes(self.root.public_bytes(serialization.Encoding.PEM))
        elif name == "intermediates.pem":
            path.write_bytes(self.intermediate.public_bytes(serialization.Encoding.PEM))
        else:
            path.write_bytes(self.log_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        return path

    def chain_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (self.intermediate, self.root))

    def trusted_root(self) -> Path:
        """A Sigstore trusted_root.json naming this CA and this log."""
        der = self.log_key.public_key().public_bytes(serialization.Encoding.DER,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo)
        root = {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [{"baseUrl": "https://rekor.aegis.invalid", "hashAlgorithm": "SHA2_256",
                       "publicKey": {"rawBytes": _b64(der), "keyDetails": "PKIX_ECDSA_P256_SHA_256"},
                       "logId": {"keyId": _b64(hashlib.sha256(der).digest())}}],
            "certificateAuthorities": [{"uri": "https://fulcio.aegis.invalid", "certChain": {"certificates": [
                {"rawBytes": _b64(c.public_bytes(serialization.Encoding.DER))} for c in (self.intermediate, self.root)
            ]}}],
        }
        path = self.directory / "trusted_root.json"
        path.write_text(json.dumps(root))
        return path

    def session(self, identity: str, issuer: str) -> "LocalSigstoreSession":
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc) + self.clock
        certificate = _leaf_certificate(self.intermediate.subject, key.public_key(), self.intermediate_key, now,
                                        identity, issuer)
        return LocalSigstoreSession(self, key, certificate)

    def log(self, body: dict) -> dict:
        """A Rekor v1 entry for `body`, in a Sigstore bundle's `tlogEntries` form, with a signed entry timestamp."""
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        log_id = hashlib.sha256(self.log_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).digest()
        integrated = int(time.time() + self.clock.total_seconds())
        index, self.log_index = self.log_index, self.log_index + 1
        signed = json.dumps({"body": _b64(canonical), "integratedTime": integrated, "logID": log_id.hex(),
                             "logIndex": index}, sort_keys=True, separators=(",", ":")).encode()
        leaf = hashlib.sha256(b"\x00" + canonical).digest()
        return {
            "logIndex": str(index), "logId": {"keyId": _b64(log_id)},
            "kindVersion": {"kind": body["kind"], "version": "0.0.1"}, "integratedTime": str(integrated),
            "inclusionPromise": {"signedEntryTimestamp": _b64(self.log_key.sign(signed, ec.ECDSA(hashes.SHA256())))},
            "inclusionProof": {"logIndex": str(index), "rootHash": _b64(leaf), "treeSize": str(index + 1),
                               "hashes": [], "checkpoint": {"envelope": "rekor.aegis.invalid\n1\n" + _b64(leaf) + "\n"}},
            "canonicalizedBody": _b64(canonical),
        }


class LocalSigstoreSession:
    """`sign_artifact` / `sign_dsse` as sigstore-python's Signer has them, against LocalSigstore."""

    def __init__(self, instance: LocalSigstore, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> None:
        self.instance, self.key, self.certificate = instance, key, certificate

    def _bundle(self, content: dict, body: dict):
        from sigstore.models import Bundle

        return Bundle.from_json(json.dumps({
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {
                "certificate": {"rawBytes": _b64(self.certificate.public_bytes(serialization.Encoding.DER))},
                "tlogEntries": [self.instance.log(body)],
            },
            **content,
        }))

    def _certificate_b64(self) -> str:
        return _b64(self.certificate.public_bytes(serialization.Encoding.PEM))

    def sign_artifact(self, input_: bytes):
        signature = self.key.sign(input_, ec.ECDSA(hashes.SHA256()))
        digest = hashlib.sha256(input_).digest()
        body = {"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": digest.hex()}},
            "signature": {"content": _b64(signature), "publicKey": {"content": self._certificate_b64()}}}}
        return self._bundle({"messageSignature": {"messageDigest": {"algorithm": "SHA2_256", "digest": _b64(digest)},
                                                  "signature": _b64(signature)}}, body)

    def sign_dsse(self, input_):
        payload = sigstore_internals.statement_bytes(input_)
        signature = self.key.sign(dsse.pae(dsse.PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
        envelope = {"payload": _b64(payload), "payloadType": dsse.PAYLOAD_TYPE, "signatures": [{"sig": _b64(signature)}]}
        stored = sigstore_internals.envelope_from_json(json.dumps(envelope)).to_json().encode()
        body = {"apiVersion": "0.0.1", "kind": "dsse", "spec": {
            "envelopeHash": {"algorithm": "sha256", "value": hashlib.sha256(stored).hexdigest()},
            "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
            "signatures": [{"signature": _b64(signature), "verifier": self._certificate_b64()}]}}
        return self._bundle({"dsseEnvelope": envelope}, body)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _ca_certificate(subject: x509.Name, issuer: x509.Name, public_key, signing_key, now: datetime.datetime,
                    ca: bool = True, path_length: Optional[int] = None, key_cert_sign: bool = True,
                    valid: Optional[Tuple[datetime.timedelta, datetime.timedelta]] = None) -> x509.Certificate:
    """A CA certificate valid for a day (or `valid`: not before/after, relative to now); `ca`, `path_length` and
    `key_cert_sign` set its basicConstraints and keyUsage."""
    before, after = valid or (-datetime.timedelta(minutes=1), datetime.timedelta(days=1))
    return (_builder(subject, issuer, public_key, now + before, now + after)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, key_cert_sign, True, False, False),
                           critical=True)
            .sign(signing_key, hashes.SHA256()))


def _leaf_certificate(issuer: x509.Name, public_key, signing_key, now: datetime.datetime, identity: str,
                      oidc_issuer: str) -> x509.Certificate:
    """What Fulcio issues: ten minutes, code signing, the identity and its OIDC issuer."""
    name = x509.RFC822Name(identity) if "@" in identity and "://" not in identity else x509.UniformResourceIdentifier(identity)
    utf8 = oidc_issuer.encode()
    return (_builder(x509.Name([]), issuer, public_key, now - datetime.timedelta(minutes=1),
                     now + datetime.timedelta(minutes=10))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.SubjectAlternativeName([name]), critical=True)
            .add_extension(x509.UnrecognizedExtension(identity_module.ISSUER_V1, utf8), critical=False)
            .add_extension(x509.UnrecognizedExtension(identity_module.ISSUER_V2, b"\x0c" + bytes([len(utf8)]) + utf8),
                           critical=False)
            .sign(signing_key, hashes.SHA256()))


def _builder(subject: x509.Name, issuer: x509.Name, public_key, not_before: datetime.datetime,
             not_after: datetime.datetime) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after))
