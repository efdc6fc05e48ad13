"""Signing keys: ECDSA P-256, as cosign makes them, from a file or an environment variable.

Accepted forms: cosign's encrypted key (`cosign generate-key-pair`: a PEM block `ENCRYPTED SIGSTORE PRIVATE
KEY` or `ENCRYPTED COSIGN PRIVATE KEY` holding JSON, scrypt-derived key, NaCl secretbox), an encrypted PKCS#8
PEM, and a plain PEM (PKCS#8 or SEC1). The password comes from an environment variable; neither it nor the
key ever appears in a command line or a cached process environment.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Optional

import nacl.exceptions
import nacl.secret
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from aegis_plugin.core.errors import AegisError

_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END \1-----", re.S)
_COSIGN_TYPES = (b"ENCRYPTED SIGSTORE PRIVATE KEY", b"ENCRYPTED COSIGN PRIVATE KEY")


class SigningKeyError(AegisError, ValueError):
    """The key cannot be loaded; the message says why (never the key or the password)."""


def load_private_key(data: bytes, password: Optional[bytes], origin: str) -> ec.EllipticCurvePrivateKey:
    match = _PEM.search(data)
    if not match:
        raise SigningKeyError(f"{origin}: not a PEM private key")
    kind = match.group(1)
    if kind in _COSIGN_TYPES:
        if not password:
            raise SigningKeyError(f"{origin}: an encrypted cosign key needs its password (AEGIS_SIGNING_KEY_PASSWORD)")
        der = _decrypt_cosign(base64.b64decode(match.group(2)), password, origin)
        key = serialization.load_der_private_key(der, password=None)
    else:
        try:
            encrypted = kind == b"ENCRYPTED PRIVATE KEY"
            if encrypted and not password:
                raise SigningKeyError(f"{origin}: an encrypted PEM key needs its password (AEGIS_SIGNING_KEY_PASSWORD)")
            key = serialization.load_pem_private_key(match.group(0), password=password if encrypted else None)
        except (ValueError, TypeError) as e:
            raise SigningKeyError(f"{origin}: cannot load the key ({e})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SigningKeyError(f"{origin}: expected an ECDSA P-256 key (what cosign generates)")
    return key


def _decrypt_cosign(blob: bytes, password: bytes, origin: str) -> bytes:
    try:
        sealed = json.loads(blob)
        kdf, cipher = sealed["kdf"], sealed["cipher"]
        if kdf["name"] != "scrypt" or cipher["name"] != "nacl/secretbox":
            raise SigningKeyError(f"{origin}: unsupported cosign key encryption {kdf['name']}/{cipher['name']}")
        params = kdf["params"]
        secret = hashlib.scrypt(password, salt=base64.b64decode(kdf["salt"]), n=params["N"], r=params["r"],
                                p=params["p"], maxmem=2**31 - 1, dklen=32)
        box = nacl.secret.SecretBox(secret)
        return box.decrypt(base64.b64decode(sealed["ciphertext"]), base64.b64decode(cipher["nonce"]))
    except nacl.exceptions.CryptoError:
        raise SigningKeyError(f"{origin}: wrong password for the encrypted cosign key") from None
    except (ValueError, KeyError, TypeError) as e:
        raise SigningKeyError(f"{origin}: not a cosign encrypted key ({type(e).__name__}: {e})") from None


def public_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ECDSA-P256-SHA256, DER-encoded; deterministic (RFC 6979), so the same payload and key give the same
    signature and the signature images are reproducible."""
    return key.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
