"""Keyless publish, offline: a local Sigstore (CA and transparency log of the tests' own) stands in for
Fulcio and Rekor; the registry (docker-registry on 127.0.0.1) and cosign, which verifies the result with
that CA and log key, are real."""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from aegis_plugin.core.publish import aegis, cli
from aegis_plugin.core.publish.testutil import publish_inputs
from aegis_plugin.core.registry.client import Registry
from aegis_plugin.core.registry.reference import parse
from aegis_plugin.core.registry.testutil import running_registry
from aegis_plugin.core.sign import cosign, testutil
from aegis_plugin.core.sign.signer import KeylessSigner

IDENTITY = "https://github.com/acme/models/.github/workflows/main.yml@refs/heads/main"
ISSUER = "https://token.actions.githubusercontent.com"


@pytest.fixture
def registry(tmp_path: Path):
    with running_registry(tmp_path / "registry") as address:
        yield address


@pytest.fixture
def sigstore(tmp_path: Path) -> testutil.LocalSigstore:
    return testutil.LocalSigstore(tmp_path / "sigstore")


def _keyless(sigstore: testutil.LocalSigstore, identity: str = IDENTITY):
    @contextlib.contextmanager
    def factory(plan, args):
        yield KeylessSigner(sigstore.session(identity, ISSUER), sigstore.chain_pem())
    return factory


def _token(workflow_ref: str = "acme/models/.github/workflows/main.yml@refs/heads/main") -> str:
    """The CI's identity token (GitHub Actions' claims), whose identity is IDENTITY by default."""
    return testutil.unsigned_jwt({"iss": ISSUER, "sub": "repo:acme/models:ref:refs/heads/main",
                                  "job_workflow_ref": workflow_ref})


def _publish(args: list, sigstore, identity: str = IDENTITY) -> list:
    """Publishes keyless with the CI token of IDENTITY; the local Sigstore certifies `identity`."""
    return list(cli.publish(cli.parser().parse_args([*args, "--signing", "keyless"]),
                            {"SIGSTORE_ID_TOKEN": _token()}, _keyless(sigstore, identity)))


def _cosign(sigstore: testutil.LocalSigstore, tmp_path: Path, *args: str, identity: str = IDENTITY) -> subprocess.CompletedProcess:
    """Real cosign, offline: our CA as the Fulcio roots, our log key as Rekor's; no SCT (no CT log here)."""
    env = {**os.environ, "SIGSTORE_REKOR_PUBLIC_KEY": str(sigstore.pem("rekor.pub")), "TUF_ROOT": str(tmp_path / "tuf")}
    return subprocess.run([testutil.cosign_binary(), *args, "--offline", "--allow-http-registry",
                           "--ca-roots", str(sigstore.pem("roots.pem")),
                           "--ca-intermediates", str(sigstore.pem("intermediates.pem")),
                           "--certificate-identity", identity, "--certificate-oidc-issuer", ISSUER,
                           "--insecure-ignore-sct"], capture_output=True, text=True, env=env, timeout=120)


def test_keyless_publish_verifies_with_cosign_and_aegis(sigstore, registry: str, tmp_path: Path, capsys) -> None:
    args = [*publish_inputs(tmp_path, b"weights"), "--target", f"{registry}/ml/fraud:1.0.0", "--signer-identity", IDENTITY]
    lines = _publish(args, sigstore)
    assert "signature attached to the image as" in lines[1]
    assert "model signature (OpenSSF model-signing, 1 files)" in lines[4]
    digest = lines[-1].rsplit("-> ", 1)[1]
    ref = f"{registry}/ml/fraud@{digest}"

    verified = _cosign(sigstore, tmp_path, "verify", ref)
    assert verified.returncode == 0, verified.stderr
    assert "transparency log was verified offline" in verified.stderr
    assert json.loads(verified.stdout)[0]["optional"]["signed_by"] == IDENTITY
    for kind in ("cyclonedx", "slsaprovenance1"):
        result = _cosign(sigstore, tmp_path, "verify-attestation", "--type", kind, ref)
        assert result.returncode == 0, (kind, result.stderr)
    assert _cosign(sigstore, tmp_path, "verify", ref, identity="someone@else").returncode != 0

    trusted_root = str(sigstore.trusted_root())
    keyless = ["--identity", IDENTITY, "--issuer", ISSUER, "--trusted-root", trusted_root]
    assert aegis.main(["verify", ref, *keyless]) == 0
    assert f"signed by {IDENTITY}" in capsys.readouterr().out
    assert aegis.main(["verify", ref, "--identity", "someone@else", "--issuer", ISSUER,
                       "--trusted-root", trusted_root]) == 1
    assert f"no valid signature: signed by '{IDENTITY}', not 'someone@else'" in capsys.readouterr().err
    other = testutil.LocalSigstore(tmp_path / "other-sigstore")
    assert aegis.main(["verify", ref, "--identity", IDENTITY, "--issuer", ISSUER,
                       "--trusted-root", str(other.trusted_root())]) == 1
    assert "not issued by a trusted certificate authority" in capsys.readouterr().err
    assert aegis.main(["verify", ref, "--identity", IDENTITY]) == 1
    assert "give --key, or --identity and --issuer" in capsys.readouterr().err

    # A re-publish adds no second keyless signature (each run would have a new key and certificate).
    again = _publish(args, sigstore)
    assert [line.split(" as ")[0] for line in again[1:5]] == [
        "signature already attached to the image",
        "attestation https://cyclonedx.org/bom already attached to the image",
        "attestation https://slsa.dev/provenance/v1 already attached to the image",
        "model signature already attached to the image"]
    client = Registry.for_reference(parse(ref))
    _, manifest, _ = client.get_manifest("ml/fraud", cosign.tag_for(digest, "sig"))
    assert len(json.loads(manifest)["layers"]) == 1

    # Promotion checks the keyless signature, then copies everything.
    with running_registry(tmp_path / "prod") as prod:
        assert aegis.main(["promote", ref, f"{prod}/fraud:1.0.0", *keyless]) == 0
        assert _cosign(sigstore, tmp_path, "verify", f"{prod}/fraud@{digest}").returncode == 0


def test_keyless_identity_must_be_signed_by(sigstore, registry: str, tmp_path: Path, capsys) -> None:
    target = f"{registry}/ml/fraud:1.0.0"
    args = [*publish_inputs(tmp_path, b"weights"), "--target", target, "--signer-identity", IDENTITY, "--signing", "keyless"]
    # The token's identity (known before anything is signed or pushed) differs from signed_by.
    token = _token("acme/models/.github/workflows/other.yml@refs/heads/main")
    assert cli.main(args, {"SIGSTORE_ID_TOKEN": token}) == 2
    err = capsys.readouterr().err
    assert ("keyless signing: the CI's identity is 'https://github.com/acme/models/.github/workflows/other.yml"
            "@refs/heads/main', but the image's manifest says signed_by") in err and err.count("\n") == 1
    assert cli.main(args, {"AEGIS_SIGNING_KEY": "x", "SIGSTORE_ID_TOKEN": token}) == 2
    assert "keyless signing is configured, but a signing key is set too" in capsys.readouterr().err
    client = Registry.for_reference(parse(target))
    assert client.manifest_digest("ml/fraud", "1.0.0") is None

    # A certificate naming someone else (what Fulcio issued is what counts): nothing attached, no tag.
    with pytest.raises(cli.PublishError, match=f"the certificate names 'ci@else.example', not signed_by '{IDENTITY}'"):
        _publish(args[:-2], sigstore, identity="ci@else.example")
    assert client.manifest_digest("ml/fraud", "1.0.0") is None
    image_digest = json.loads(Path(args[1], "index.json").read_text())["manifests"][0]["digest"]
    assert client.get_manifest("ml/fraud", cosign.tag_for(image_digest, "sig")) is None
