"""`aegis verify` against a real registry (docker-registry on 127.0.0.1) whose `.sig`, `.att` and `.msig`
images hold entries anyone with push access could have added: each invalid one is a one-line warning naming
its layer and is skipped; verification passes if and only if the required ones verify."""
from __future__ import annotations

import base64
import contextlib
import datetime
import json
from pathlib import Path
from typing import Callable, Dict, Tuple

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from aegis_plugin.core.publish import aegis, cli, model_signature
from aegis_plugin.core.publish.testutil import (
    attached_layers,
    publish_inputs,
    put_attached,
    simple_signed,
    signing_key_env,
    write_public_key,
)
from aegis_plugin.core.registry.client import Registry
from aegis_plugin.core.registry.reference import parse
from aegis_plugin.core.registry.testutil import running_registry
from aegis_plugin.core.sign import cosign, dsse, testutil
from aegis_plugin.core.sign.signer import KeylessSigner

IDENTITY = "ci@aegis.example"
KEYLESS_IDENTITY = "https://github.com/acme/models/.github/workflows/main.yml@refs/heads/main"
ISSUER = "https://token.actions.githubusercontent.com"
OTHER_DIGEST = "sha256:" + "0" * 64
DAY = datetime.timedelta(days=1)
KEY, OTHER_KEY = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def registry(tmp_path: Path):
    with running_registry(tmp_path / "registry") as address:
        yield address


def _publish(registry: str, tmp_path: Path, capsys) -> Tuple[Registry, str, str]:
    """A key-signed image: (client, its digest, REGISTRY/ml/fraud@DIGEST)."""
    args = [*publish_inputs(tmp_path, b"weights"), "--target", f"{registry}/ml/fraud:1.0.0",
            "--signer-identity", IDENTITY]
    assert cli.main(args, signing_key_env(KEY)) == 0
    digest = capsys.readouterr().out.rsplit("-> ", 1)[1].strip()
    return Registry.for_reference(parse(f"{registry}/ml/fraud")), digest, f"{registry}/ml/fraud@{digest}"


def _signed_envelope(statement: bytes, key: ec.EllipticCurvePrivateKey = KEY) -> bytes:
    return dsse.envelope(statement, key)


def _statement(digest: str, **changes) -> bytes:
    """A CycloneDX statement about `digest`, with `changes` (None drops a field)."""
    value = {**json.loads(dsse.statement("ml/fraud", digest, dsse.CYCLONEDX, {"bomFormat": "CycloneDX"})), **changes}
    return json.dumps({k: v for k, v in value.items() if v is not None}).encode()


def _envelope(**fields) -> bytes:
    return json.dumps({"payloadType": dsse.PAYLOAD_TYPE, **fields}).encode()


def _att(data: bytes) -> cosign.Layer:
    return cosign.Layer(cosign.DSSE_ENVELOPE, data, {"predicateType": dsse.CYCLONEDX})


# What could be pushed next to the real entries: (suffix, the layer for an image digest, the reason given).
JUNK: Dict[str, Tuple[str, Callable[[str], cosign.Layer], str]] = {
    "att-not-json": ("att", lambda d: _att(b"{not json"), "the DSSE envelope is not JSON"),
    "att-not-an-object": ("att", lambda d: _att(b'["x"]'), "the DSSE envelope is not a JSON object"),
    "att-no-payload": ("att", lambda d: _att(_envelope(signatures=[])), "'payload' is missing or not a string"),
    "att-bad-base64": ("att", lambda d: _att(_envelope(payload="%%%", signatures=[{"sig": "AAAA"}])),
                       "the envelope's payload is not base64"),
    "att-bad-signature-base64": ("att", lambda d: _att(_envelope(payload=base64.b64encode(b"{}").decode(),
                                                                 signatures=[{"sig": "%%%"}])),
                                 "a signature is not base64"),
    "att-no-signature": ("att", lambda d: _att(_envelope(payload=base64.b64encode(b"{}").decode())),
                         "'signatures' is missing or not a list"),
    "att-other-key": ("att", lambda d: _att(_signed_envelope(_statement(d), OTHER_KEY)),
                      "a signature does not verify with this key"),
    "att-other-digest": ("att", lambda d: _att(_signed_envelope(_statement(OTHER_DIGEST))),
                         f"the https://cyclonedx.org/bom attestation is about ['{OTHER_DIGEST}'], not this digest"),
    "att-signed-junk": ("att", lambda d: _att(_signed_envelope(b"junk")), "the statement is not JSON"),
    "att-no-predicate": ("att", lambda d: _att(_signed_envelope(_statement(d, predicate=None))),
                         "'predicate' is missing or not an object"),
    "att-bad-subject": ("att", lambda d: _att(_signed_envelope(_statement(d, subject=[{"digest": "x"}]))),
                        "'digest' is missing or not an object"),
    "sig-no-signature": ("sig", lambda d: cosign.Layer(cosign.SIMPLE_SIGNING, b"junk", {}), "a signature is missing"),
    "sig-bad-base64": ("sig", lambda d: cosign.Layer(cosign.SIMPLE_SIGNING, b"junk",
                                                     {cosign.SIGNATURE_ANNOTATION: "@@"}),
                       "a signature is not base64"),
    "sig-other-key": ("sig", lambda d: simple_signed(cosign.simple_signing_payload("ml/fraud", d), OTHER_KEY),
                      "a signature does not verify with this key"),
    "sig-signed-junk": ("sig", lambda d: simple_signed(b"junk", KEY), "the signed payload is not JSON"),
    "sig-no-critical": ("sig", lambda d: simple_signed(b'{"optional": null}', KEY),
                        "'critical' is missing or not an object"),
    "sig-other-digest": ("sig", lambda d: simple_signed(cosign.simple_signing_payload("ml/fraud", OTHER_DIGEST), KEY),
                         "a valid signature is for another digest"),
    "msig-junk": ("msig", lambda d: cosign.Layer(model_signature.BUNDLE_MEDIA_TYPE, b"junk", {}),
                  "the model signature does not verify"),
}


@pytest.mark.parametrize("case", sorted(JUNK))
def test_an_invalid_entry_next_to_valid_ones_is_skipped_with_a_warning(registry: str, tmp_path: Path, capsys,
                                                                       case: str) -> None:
    client, digest, ref = _publish(registry, tmp_path, capsys)
    suffix, make, reason = JUNK[case]
    junk = make(digest)
    put_attached(client, "ml/fraud", digest, suffix, [junk, *attached_layers(client, "ml/fraud", digest, suffix)])
    public_key = write_public_key(KEY, tmp_path / "cosign.pub")
    assert aegis.main(["verify", ref, "--key", public_key, "--identity", IDENTITY]) == 0
    out, err = capsys.readouterr()
    assert f"verified {ref}: signed by {IDENTITY}; attestations: {dsse.CYCLONEDX}, {dsse.SLSA_PROVENANCE_V1}" in out
    assert err.startswith(f"aegis: warning: {ref}: skipped layer #1 {junk.digest} of "
                          f"{cosign.tag_for(digest, suffix)}: ") and reason in err, err
    assert err.count("\n") == 1


@pytest.mark.parametrize("suffix, error", [
    ("att", "missing signed attestation(s): https://cyclonedx.org/bom, https://slsa.dev/provenance/v1 (skipped: "
            "the DSSE envelope is not JSON (layers #1 {junk}, #2 {other}))"),
    ("sig", "no valid signature: a signature is missing (layers #1 {junk}, #2 {other})"),
    ("msig", "no valid model signature: the model signature does not verify"),
])
def test_only_invalid_entries_fail_in_one_line(registry: str, tmp_path: Path, capsys, suffix: str, error: str) -> None:
    client, digest, ref = _publish(registry, tmp_path, capsys)
    media_type = {"att": cosign.DSSE_ENVELOPE, "sig": cosign.SIMPLE_SIGNING, "msig": model_signature.BUNDLE_MEDIA_TYPE}
    junk, other = (cosign.Layer(media_type[suffix], data, {}) for data in (b"{junk", b"{more junk"))
    put_attached(client, "ml/fraud", digest, suffix, [junk, other])
    assert aegis.main(["verify", ref, "--key", write_public_key(KEY, tmp_path / "cosign.pub")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"aegis: {ref}: " + error.format(junk=junk.digest, other=other.digest)), err
    assert err.count("\n") == 1


def _keyless_publish(sigstore: testutil.LocalSigstore, registry: str, tmp_path: Path) -> str:
    @contextlib.contextmanager
    def factory(plan, args):
        yield KeylessSigner(sigstore.session(KEYLESS_IDENTITY, ISSUER), sigstore.chain_pem())

    token = testutil.unsigned_jwt({"iss": ISSUER, "sub": "repo:acme/models:ref:refs/heads/main",
                                   "job_workflow_ref": "acme/models/.github/workflows/main.yml@refs/heads/main"})
    args = cli.parser().parse_args([*publish_inputs(tmp_path, b"weights"), "--target", f"{registry}/ml/fraud:1.0.0",
                                    "--signer-identity", KEYLESS_IDENTITY, "--signing", "keyless"])
    lines = cli.publish(args, {"SIGSTORE_ID_TOKEN": token}, factory)
    return lines[-1].rsplit("-> ", 1)[1]


def test_keyless_invalid_entries_are_skipped(registry: str, tmp_path: Path, capsys) -> None:
    sigstore = testutil.LocalSigstore(tmp_path / "sigstore")
    digest = _keyless_publish(sigstore, registry, tmp_path)
    client, ref = Registry.for_reference(parse(f"{registry}/ml/fraud")), f"{registry}/ml/fraud@{digest}"
    (valid_signature,) = attached_layers(client, "ml/fraud", digest, "sig")
    forged = cosign.Layer(cosign.SIMPLE_SIGNING, valid_signature.data,
                          {**valid_signature.annotations, cosign.BUNDLE_ANNOTATION: "junk"})
    signature_only = {cosign.SIGNATURE_ANNOTATION: valid_signature.annotations[cosign.SIGNATURE_ANNOTATION]}
    no_certificate = cosign.Layer(cosign.SIMPLE_SIGNING, valid_signature.data, signature_only)
    put_attached(client, "ml/fraud", digest, "sig", [forged, no_certificate, valid_signature])
    keyless = ["--identity", KEYLESS_IDENTITY, "--issuer", ISSUER, "--trusted-root", str(sigstore.trusted_root())]
    assert aegis.main(["verify", ref, *keyless]) == 0
    out, err = capsys.readouterr()
    assert f"signed by {KEYLESS_IDENTITY}" in out
    tag = cosign.tag_for(digest, "sig")
    assert err.splitlines() == [
        f"aegis: warning: {ref}: skipped layer #1 {forged.digest} of {tag}: not a cosign transparency-log bundle "
        "(JSONDecodeError('Expecting value: line 1 column 1 (char 0)'))",
        f"aegis: warning: {ref}: skipped layer #2 {no_certificate.digest} of {tag}: a signature has no keyless "
        "certificate or transparency-log entry",
    ]

    put_attached(client, "ml/fraud", digest, "sig", [forged])
    assert aegis.main(["verify", ref, *keyless]) == 1
    err = capsys.readouterr().err
    assert "no valid signature: not a cosign transparency-log bundle" in err and err.count("\n") == 1


@pytest.mark.parametrize("intermediate, error", [
    ({"ca": False}, "the certificate authority 'CN=aegis-test-fulcio-intermediate' of the signing chain is not a CA"),
    ({"valid": (-2 * DAY, -DAY)},
     "the certificate authority 'CN=aegis-test-fulcio-intermediate' was not valid when the signature was logged"),
])
def test_keyless_signatures_under_an_unfit_intermediate_are_refused(registry: str, tmp_path: Path, capsys,
                                                                    intermediate: dict, error: str) -> None:
    sigstore = testutil.LocalSigstore(tmp_path / "sigstore", intermediate=intermediate)
    digest = _keyless_publish(sigstore, registry, tmp_path)
    keyless = ["--identity", KEYLESS_IDENTITY, "--issuer", ISSUER, "--trusted-root", str(sigstore.trusted_root())]
    assert aegis.main(["verify", f"{registry}/ml/fraud@{digest}", *keyless]) == 1
    err = capsys.readouterr().err
    assert f"no valid signature: {error}" in err and err.count("\n") == 1
