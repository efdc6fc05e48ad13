"""Keyless trust: which certificate authorities and transparency logs to believe, and who a certificate names.

The trust material is a Sigstore `trusted_root.json` (the format cosign's `--trusted-root` and
sigstore-python read): the Fulcio CA chains and the Rekor public keys. By default, the production root
that ships inside sigstore-python, so verification needs no network.
"""
from __future__ import annotations

import base64
import datetime
import hashlib
import json
from dataclasses import dataclass
from typing import Dict, List, Optional

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from aegis_plugin.core.errors import AegisError
from aegis_plugin.core.sign.tlog import LogEntry, LogEntryError

# Fulcio's certificate extensions naming the OIDC issuer: v2 (DER UTF8String) and the older raw string.
ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")


class IdentityError(AegisError):
    pass


@dataclass(frozen=True)
class TrustedRoot:
    certificate_authorities: List[x509.Certificate]
    log_keys: Dict[str, ec.EllipticCurvePublicKey]  # hex log id -> key

    @classmethod
    def from_json(cls, data: bytes, origin: str) -> "TrustedRoot":
        try:
            root = json.loads(data)
            authorities = [
                x509.load_der_x509_certificate(base64.b64decode(c["rawBytes"]))
                for ca in root.get("certificateAuthorities", [])
                for c in ca["certChain"]["certificates"]
            ]
            log_keys = {}
            for log in root.get("tlogs", []):
                key = serialization.load_der_public_key(base64.b64decode(log["publicKey"]["rawBytes"]))
                if isinstance(key, ec.EllipticCurvePublicKey):
                    log_keys[base64.b64decode(log["logId"]["keyId"]).hex()] = key
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise IdentityError(f"{origin}: not a Sigstore trusted root ({e!r})") from None
        if not authorities or not log_keys:
            raise IdentityError(f"{origin}: the trusted root names no certificate authority or no ECDSA log key")
        return cls(authorities, log_keys)

    @classmethod
    def sigstore_production(cls) -> "TrustedRoot":
        """The public-good Sigstore root that sigstore-python ships (as of its locked version)."""
        from importlib import resources

        path = resources.files("sigstore") / "_store" / "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev" / "trusted_root.json"
        return cls.from_json(path.read_bytes(), "sigstore's production trusted root")


def log_key_id(key: ec.EllipticCurvePublicKey) -> str:
    """A Rekor log's id: the SHA-256 of its DER public key."""
    return hashlib.sha256(key.public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()


def certificate_identity(certificate: x509.Certificate) -> str:
    """The identity Fulcio wrote in the certificate: its e-mail or URI subject alternative name."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise IdentityError("the signing certificate names no identity (no subject alternative name)") from None
    for kind in (x509.RFC822Name, x509.UniformResourceIdentifier):
        found = names.get_values_for_type(kind)
        if found:
            return found[0]
    raise IdentityError("the signing certificate names no e-mail or URI identity")


def certificate_issuer(certificate: x509.Certificate) -> Optional[str]:
    """The OIDC issuer that vouched for the identity, from Fulcio's extension."""
    for oid in (ISSUER_V2, ISSUER_V1):
        try:
            raw = certificate.extensions.get_extension_for_oid(oid).value.value  # type: ignore[attr-defined]
        except x509.ExtensionNotFound:
            continue
        if oid == ISSUER_V2 and raw[:1] == b"\x0c":  # DER UTF8String: tag, length, text (short form)
            return raw[2:].decode()
        return raw.decode()
    return None


def verify_signer(trust: TrustedRoot, certificate_pem: bytes, entry: LogEntry, identity: str, issuer: str) -> x509.Certificate:
    """Checks a keyless signer: the transparency log recorded this certificate's signature, the certificate
    chains to a trusted CA through certificates that were all valid, and allowed to issue, at that time
    (the log's integrated time: the short-lived leaf has expired long before anyone verifies), and it names
    `identity` and `issuer`. Returns the certificate."""
    certificate = x509.load_pem_x509_certificate(certificate_pem)
    # The time is the entry's own; it counts only once the log's signature over it (the SET) verifies below.
    try:
        logged_at = datetime.datetime.fromtimestamp(entry.integrated_time, datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise IdentityError(f"the transparency-log entry has an impossible time ({entry.integrated_time})") from None
    _chain_to_trusted(trust, certificate, logged_at)
    try:
        entry.verify_set(trust.log_keys)
        logged = x509.load_pem_x509_certificate(entry.certificate_pem())
    except (LogEntryError, ValueError) as e:
        raise IdentityError(str(e)) from None
    if logged != certificate:
        raise IdentityError("the transparency log entry names another certificate")
    if not _valid_at(certificate, logged_at):
        raise IdentityError("the signature was logged outside the certificate's validity")
    found, found_issuer = certificate_identity(certificate), certificate_issuer(certificate)
    if found != identity:
        raise IdentityError(f"signed by {found!r}, not {identity!r}")
    if found_issuer != issuer:
        raise IdentityError(f"the identity was vouched for by {found_issuer!r}, not {issuer!r}")
    return certificate


def _chain_to_trusted(trust: TrustedRoot, certificate: x509.Certificate, at: datetime.datetime) -> None:
    """Walks from `certificate` up to a trusted self-signed root. Each issuer on the way must be a CA
    (basicConstraints CA=true; keyUsage, when present, with keyCertSign), allow the CAs below it (pathLen)
    and be valid at `at`: an expired or non-CA certificate in a trusted root must not vouch for anyone."""
    current, below = certificate, 0  # below: the CA certificates between `current` and the leaf
    for _ in range(len(trust.certificate_authorities) + 1):
        if current is not certificate:
            _check_authority(current, below, at)
            below += 1
        if current in trust.certificate_authorities and current.issuer == current.subject:
            return
        parent = next((ca for ca in trust.certificate_authorities if _issued_by(current, ca)), None)
        if parent is None:
            break
        current = parent
    raise IdentityError("the signing certificate was not issued by a trusted certificate authority")


def _check_authority(ca: x509.Certificate, below: int, at: datetime.datetime) -> None:
    name = ca.subject.rfc4514_string() or "(no subject)"
    try:
        constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise IdentityError(f"the certificate authority {name!r} of the signing chain is not a CA "
                            "(basicConstraints CA=true missing)")
    try:
        if not ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign:
            raise IdentityError(f"the certificate authority {name!r} of the signing chain may not sign "
                                "certificates (keyUsage without keyCertSign)")
    except x509.ExtensionNotFound:
        pass
    if constraints.path_length is not None and below > constraints.path_length:
        raise IdentityError(f"the certificate authority {name!r} allows {constraints.path_length} CA(s) below it "
                            f"(pathLen), the signing chain has {below}")
    if not _valid_at(ca, at):
        when = "%Y-%m-%dT%H:%M:%SZ"
        raise IdentityError(
            f"the certificate authority {name!r} was not valid when the signature was logged ({at:{when}}; valid "
            f"{ca.not_valid_before_utc:{when}} to {ca.not_valid_after_utc:{when}})")


def _valid_at(certificate: x509.Certificate, at: datetime.datetime) -> bool:
    return certificate.not_valid_before_utc <= at <= certificate.not_valid_after_utc


def _issued_by(certificate: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(ca)
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False
