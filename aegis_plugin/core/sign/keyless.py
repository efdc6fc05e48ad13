"""Keyless signing in CI: the CI's OIDC identity token buys a short-lived Fulcio certificate from Sigstore
(sigstore-python), and every signature is recorded in Rekor. No key exists to leak or rotate.

The token comes from `SIGSTORE_ID_TOKEN` (GitLab's `id_tokens`, or any CI), else from the ambient
credentials sigstore-python detects (GitHub Actions with `permissions: id-token: write`). The identity
Fulcio will write into the certificate is known from the token, so a mismatch with the image's `signed_by`
is refused before anything is signed or pushed.
"""
from __future__ import annotations

import base64
import contextlib
import json
from typing import Any, Dict, Iterator, Mapping

from cryptography.hazmat.primitives import serialization

from aegis_plugin.core.sign import sigstore_internals
from aegis_plugin.core.sign.signer import KeylessSigner, SigningError

TOKEN_ENV = "SIGSTORE_ID_TOKEN"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
# Issuers whose certificates Fulcio makes for the token's e-mail (its config; everything else: `sub`).
EMAIL_ISSUERS = ("https://accounts.google.com", "https://oauth2.sigstore.dev/auth", "https://oauth2.sigstage.dev/auth")


def identity_token(environ: Mapping[str, str]) -> str:
    token = environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    from sigstore.oidc import detect_credential

    try:
        detected = detect_credential()
    except Exception as e:  # sigstore raises its own error types for a failing ambient provider
        raise SigningError(f"keyless signing: cannot get the CI's identity token: {e}") from None
    if not detected:
        raise SigningError(
            f"keyless signing needs an OIDC identity token: set {TOKEN_ENV}, or run in a CI that provides one "
            "(GitHub Actions: `permissions: id-token: write`)"
        )
    return detected


def claims(token: str) -> Dict[str, Any]:
    """The token's claims, unverified (Fulcio verifies the token; this only predicts the certificate)."""
    try:
        body = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (IndexError, ValueError) as e:
        raise SigningError(f"keyless signing: {TOKEN_ENV} is not a JWT ({type(e).__name__})") from None


def certificate_identity(token_claims: Mapping[str, Any]) -> str:
    """The identity Fulcio will put in the certificate for this token: GitHub Actions' workflow URI, the
    e-mail for e-mail issuers, the subject otherwise."""
    issuer = token_claims.get("iss")
    if issuer == GITHUB_ISSUER and token_claims.get("job_workflow_ref"):
        return f"https://github.com/{token_claims['job_workflow_ref']}"
    if issuer in EMAIL_ISSUERS and token_claims.get("email"):
        return str(token_claims["email"])
    return str(token_claims.get("sub", ""))


@contextlib.contextmanager
def sigstore_signer(token: str, staging: bool = False) -> Iterator[KeylessSigner]:
    """A signer holding one ephemeral key and its Fulcio certificate for all of a publish's signatures."""
    from sigstore.errors import Error
    from sigstore.models import ClientTrustConfig
    from sigstore.oidc import IdentityToken
    from sigstore.sign import Signer, SigningContext

    instance = "staging" if staging else "production"
    try:
        config = ClientTrustConfig.staging() if staging else ClientTrustConfig.production()
        services = sigstore_internals.rekor_v1_signing_config(config)
        context = SigningContext(fulcio=services.get_fulcio(), rekor=services.get_tlogs()[0],
                                 trusted_root=config.trusted_root)
        chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in config.trusted_root.get_fulcio_certs())
        session = Signer(IdentityToken(token), context)  # requests the certificate
    except Error as e:
        raise SigningError(f"keyless signing through Sigstore ({instance}) failed: {e}") from None
    yield KeylessSigner(session, chain)
