"""The weights' own signature, in the OpenSSF model-signing format (`model-signing` on PyPI).

The model files of an image (`/app/model/*` in its model layer) are signed as a directory: the result is a
Sigstore bundle that model-signing's CLI checks against the files alone, without the image
(`model_signing verify key MODEL_DIR --signature model.sig --public_key cosign.pub` for a key, `verify sigstore
--identity … --identity_provider …` for keyless). It is attached to the image's digest like cosign's
artifacts, as the `sha256-<hex>.msig` image of one bundle layer.

Weights may be gigabytes: layers are read from files and the model files written to a directory in chunks,
never held in memory whole.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import secrets
import shutil
import tempfile
from typing import Callable, List

import model_signing
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from aegis_plugin.core.errors import AegisError
from aegis_plugin.core.oci import flatten
from aegis_plugin.core.sign import dsse, sigstore_internals
from aegis_plugin.core.sign.identity import IdentityError, TrustedRoot, verify_signer
from aegis_plugin.core.sign.signer import KeylessSigner, KeySigner, Signer, leaf_certificate
from aegis_plugin.core.sign.tlog import LogEntry, LogEntryError

MODEL_DIR = "app/model/"
MODEL_PATH = "/" + MODEL_DIR  # as the final filesystem names it
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
SUFFIX = "msig"


class ModelSignatureError(AegisError):
    pass


def extract_model(manifest: bytes, layer_file: Callable[[str], str], directory: str) -> List[str]:
    """Writes the `/app/model/` files of the image's final filesystem into `directory` and returns their names:
    every layer counts (the weights have layers of their own below the model's small files), read top first
    with whiteouts (`core/oci/flatten.py`, the contract test's and the SBOM's view too). `layer_file(digest)`
    gives the path of a layer blob (plain, gzip or zstd tar) when it is reached."""
    digests = [layer["digest"] for layer in json.loads(manifest)["layers"]]
    names = []
    for path, member, tar in flatten.final_entries([functools.partial(layer_file, d) for d in digests]):
        name = path[len(MODEL_PATH):] if path.startswith(MODEL_PATH) else ""
        if member.isfile() and name and "/" not in name:
            names.append(name)
            with tar.extractfile(member) as source, open(os.path.join(directory, name), "wb") as f:  # type: ignore[union-attr]
                shutil.copyfileobj(source, f, 1 << 20)
    if not names:
        raise ModelSignatureError(f"the image has no files under /{MODEL_DIR}")
    return sorted(names)


def sign(model_dir: str, signer: Signer) -> bytes:
    """The model-signing bundle over the files of `model_dir`."""
    if isinstance(signer, KeylessSigner):
        return _sign_keyless(model_dir, signer)
    assert isinstance(signer, KeySigner)
    return _sign_with_key(model_dir, signer.key)


def _sign_keyless(model_dir: str, signer: KeylessSigner) -> bytes:
    """What model-signing's Sigstore signer makes (its in-toto statement, signed in DSSE through Sigstore),
    with the publish's own Sigstore session, so one certificate signs everything."""
    from sigstore.dsse import Statement

    bundle = signer.session.sign_dsse(Statement(statement(model_dir)))
    return bundle.to_json().encode()


def statement(model_dir: str) -> bytes:
    """model-signing's in-toto statement for `model_dir` (its default hashing)."""
    from google.protobuf import json_format  # pants: no-infer-dep (model-signing brings protobuf with it)

    manifest = model_signing.hashing.Config().hash(model_dir)
    return json_format.MessageToJson(sigstore_internals.model_signing_statement(manifest)).encode()


def _sign_with_key(model_dir: str, key: ec.EllipticCurvePrivateKey) -> bytes:
    """The key reaches the library as an encrypted PEM with a one-time password in a private temporary
    directory, removed right after."""
    with tempfile.TemporaryDirectory(prefix="aegis-model-key-") as work:
        password = secrets.token_hex(16)
        key_path = os.path.join(work, "key.pem")
        with open(os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.BestAvailableEncryption(password.encode())))
        signature = os.path.join(work, "model.sig")
        # model-signing 1.1.1 hints `str` for the password but hands it to `cryptography`, which wants bytes.
        signer = model_signing.signing.Config().use_elliptic_key_signer(private_key=key_path, password=password.encode())
        signer.sign(model_dir, signature)
        with open(signature, "rb") as f:
            return f.read()


def verify_keyless(model_dir: str, bundle: bytes, trust: TrustedRoot, identity: str, issuer: str) -> None:
    """Raises ModelSignatureError unless `bundle` is a Sigstore bundle by `identity` (vouched for by `issuer`)
    whose statement is model-signing's statement of exactly the files of `model_dir`."""
    try:
        data = json.loads(bundle)
        certificate = leaf_certificate(data)
        entry = LogEntry.from_bundle(data)
        verify_signer(trust, certificate.public_bytes(serialization.Encoding.PEM), entry, identity, issuer)
        envelope = data["dsseEnvelope"]
        payload = base64.b64decode(envelope["payload"])
        signature = base64.b64decode(envelope["signatures"][0]["sig"])
        certificate.public_key().verify(signature, dsse.pae(envelope["payloadType"], payload),  # type: ignore[call-arg, union-attr]
                                        ec.ECDSA(hashes.SHA256()))
    except (IdentityError, LogEntryError) as e:
        raise ModelSignatureError(f"the model signature: {e}") from None
    except (InvalidSignature, KeyError, IndexError, TypeError, ValueError) as e:
        raise ModelSignatureError(f"the model signature does not verify ({type(e).__name__})") from None
    if entry.payload_hash() != hashlib.sha256(payload).hexdigest():
        raise ModelSignatureError("the model signature's transparency-log entry is about another statement")
    if json.loads(payload) != json.loads(statement(model_dir)):
        raise ModelSignatureError("the model signature does not verify: it signs other model files")


def verify(model_dir: str, bundle: bytes, public_key_pem: bytes) -> None:
    """Raises ModelSignatureError unless `bundle` signs exactly the files of `model_dir` with the key."""
    with tempfile.TemporaryDirectory(prefix="aegis-model-sig-") as work:
        for name, content in (("model.sig", bundle), ("key.pub", public_key_pem)):
            with open(os.path.join(work, name), "wb") as f:
                f.write(content)
        try:
            model_signing.verifying.Config().use_elliptic_key_verifier(
                public_key=os.path.join(work, "key.pub")
            ).verify(model_dir, os.path.join(work, "model.sig"))
        except Exception as e:  # the library raises ValueError and others for a mismatch
            raise ModelSignatureError(f"the model signature does not verify: {e}") from None


def model_dir_of(parent: str) -> str:
    """A fresh `model` directory under `parent` (model-signing names the model after its directory)."""
    path = os.path.join(parent, "model")
    os.mkdir(path)
    return path


