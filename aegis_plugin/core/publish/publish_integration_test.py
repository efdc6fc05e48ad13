"""Publish, verify and promote against real registries (docker-registry on 127.0.0.1), checked by real cosign."""
from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from aegis_plugin.core.publish import aegis, cli, model_signature
from aegis_plugin.core.registry.client import Registry
from aegis_plugin.core.registry.reference import parse
from aegis_plugin.core.publish.testutil import attached_layers, publish_inputs
from aegis_plugin.core.registry.testutil import running_registry
from aegis_plugin.core.sign import cosign, keys, testutil
from aegis_plugin.core.sign.signer import KeySigner

PASSWORD = "correct horse"
IDENTITY = "ci@aegis.example"


@pytest.fixture(scope="module")
def cosign_binary() -> str:
    return testutil.cosign_binary()


@pytest.fixture(scope="module")
def key_dir(cosign_binary: str, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("keys")
    testutil.generate_key_pair(cosign_binary, directory, PASSWORD)
    testutil.generate_key_pair(cosign_binary, directory, "", prefix="other")
    return directory


@pytest.fixture
def registry(tmp_path: Path):
    with running_registry(tmp_path / "registry") as address:
        yield address


def _env(key_dir: Path) -> dict:
    return {"AEGIS_SIGNING_KEY_FILE": str(key_dir / "cosign.key"), "AEGIS_SIGNING_KEY_PASSWORD": PASSWORD}


def _cosign(cosign_binary: str, *args: str) -> int:
    return subprocess.run([cosign_binary, *args, "--insecure-ignore-tlog=true", "--allow-http-registry"],
                          capture_output=True).returncode


def test_publish_signs_attests_and_tags(cosign_binary, key_dir: Path, registry: str, tmp_path: Path, capsys) -> None:
    args = [*publish_inputs(tmp_path, b"weights"), "--target", f"{registry}/ml/fraud:1.0.0", "--signer-identity", IDENTITY]
    assert cli.main(args, _env(key_dir)) == 0
    out = capsys.readouterr().out
    assert "2 blob(s)" in out and "signature attached" in out and f"{registry}/ml/fraud:1.0.0 -> sha256:" in out
    assert "model signature (OpenSSF model-signing, 1 files) attached" in out
    assert "referrers: the registry has no OCI 1.1 referrers API; attached by cosign's tag schema" in out
    digest = out.rsplit("-> ", 1)[1].strip()
    # Each attached image names the signed image as its subject (what OCI 1.1 registries index as referrers).
    client = Registry.for_reference(parse(f"{registry}/ml/fraud:1.0.0"))
    image_manifest = client.get_manifest("ml/fraud", digest)
    for suffix in ("sig", "att", "msig"):
        subject = json.loads(client.get_manifest("ml/fraud", cosign.tag_for(digest, suffix))[1])["subject"]
        assert subject == {"mediaType": image_manifest[0], "digest": digest, "size": len(image_manifest[1])}
    ref = f"{registry}/ml/fraud@{digest}"
    pub = str(key_dir / "cosign.pub")
    assert _cosign(cosign_binary, "verify", "--key", pub, ref) == 0
    assert _cosign(cosign_binary, "verify-attestation", "--key", pub, "--type", "cyclonedx", ref) == 0
    assert _cosign(cosign_binary, "verify-attestation", "--key", pub, "--type", "slsaprovenance1", ref) == 0
    assert _cosign(cosign_binary, "verify", "--key", str(key_dir / "other.pub"), ref) != 0

    # Publishing again uploads no layer bytes and changes nothing.
    assert cli.main(args, _env(key_dir)) == 0
    again = capsys.readouterr().out
    assert "no layer bytes uploaded" in again and "signature already attached" in again and "already ->" in again
    assert "model signature already attached" in again

    # The weights' signature, checked by model-signing's own CLI against the files alone.
    client = Registry.for_reference(parse(ref))
    _, bundle_manifest, _ = client.get_manifest("ml/fraud", cosign.tag_for(digest, "msig"))
    (bundle,) = cosign.existing_layers(bundle_manifest, lambda d: client.get_blob("ml/fraud", d))
    (tmp_path / "model").mkdir()
    (tmp_path / "model/weights.safetensors").write_bytes(b"weights")
    (tmp_path / "model.sig").write_bytes(bundle.data)
    model_signing = [sys.executable, "-c", "import sys; from model_signing._cli import main; sys.exit(main())"]
    checked = subprocess.run([*model_signing, "verify", "key", str(tmp_path / "model"), "--signature",
                              str(tmp_path / "model.sig"), "--public_key", str(key_dir / "cosign.pub")],
                             capture_output=True, text=True)
    assert checked.returncode == 0 and "Verification succeeded" in checked.stdout + checked.stderr, checked
    (tmp_path / "model/weights.safetensors").write_bytes(b"swapped")
    assert subprocess.run([*model_signing, "verify", "key", str(tmp_path / "model"), "--signature",
                           str(tmp_path / "model.sig"), "--public_key", str(key_dir / "cosign.pub")],
                          capture_output=True).returncode != 0

    # aegis verify: the key, the identity, the attestations.
    assert aegis.main(["verify", ref, "--key", pub, "--identity", IDENTITY]) == 0
    assert f"signed by {IDENTITY}" in capsys.readouterr().out
    assert aegis.main(["verify", ref, "--key", pub, "--identity", "someone@else"]) == 1
    assert "signed by 'ci@aegis.example', not 'someone@else'" in capsys.readouterr().err
    assert aegis.main(["verify", ref, "--key", str(key_dir / "other.pub")]) == 1
    assert "no valid signature: a signature does not verify with this key" in capsys.readouterr().err
    assert aegis.main(["verify", f"{registry}/ml/fraud:1.0.0", "--key", pub]) == 1
    assert "verify an image by digest" in capsys.readouterr().err


def test_the_model_artifact_is_pushed_signed_attested_and_tagged_beside_the_image(
    cosign_binary, key_dir: Path, registry: str, tmp_path: Path, capsys
) -> None:
    args = [*publish_inputs(tmp_path, b"weights", model_artifact=True), "--target", f"{registry}/ml/fraud:1.0.0",
            "--signer-identity", IDENTITY]
    assert cli.main(args, _env(key_dir)) == 0
    out = capsys.readouterr().out
    digest = out.rsplit("-> ", 1)[1].strip()
    client = Registry.for_reference(parse(f"{registry}/ml/fraud:1.0.0"))
    artifact = client.manifest_digest("ml/fraud", "1.0.0_modelpack")
    assert artifact and artifact != digest and f"{registry}/ml/fraud:1.0.0_modelpack -> {artifact}" in out
    # Its weight layer is the image's: only its config is uploaded (with its manifest).
    (config_size,) = [json.loads(client.get_manifest("ml/fraud", artifact)[1])["config"]["size"]]
    assert f"ml/fraud@{artifact}: 1 blob(s), {config_size} bytes uploaded, 1 already present" in out
    ref, model_ref = f"{registry}/ml/fraud@{digest}", f"{registry}/ml/fraud@{artifact}"
    pub = str(key_dir / "cosign.pub")
    for checked in (ref, model_ref):
        assert _cosign(cosign_binary, "verify", "--key", pub, checked) == 0
        assert _cosign(cosign_binary, "verify-attestation", "--key", pub, "--type", "cyclonedx", checked) == 0
        assert _cosign(cosign_binary, "verify-attestation", "--key", pub, "--type", "slsaprovenance1", checked) == 0
    # Each attestation's subjects name both digests; the weights are signed once, for both.
    for subject in (digest, artifact):
        for layer in attached_layers(client, "ml/fraud", subject, "att"):
            statement = json.loads(base64.b64decode(json.loads(layer.data)["payload"]))
            assert [f"sha256:{s['digest']['sha256']}" for s in statement["subject"]] == [digest, artifact]
    assert [x.data for x in attached_layers(client, "ml/fraud", digest, "msig")] == [
        x.data for x in attached_layers(client, "ml/fraud", artifact, "msig")]
    assert out.count("model signature (OpenSSF model-signing, 1 files) attached") == 2

    # aegis verify and promote take the artifact by its digest, as they take the image.
    assert aegis.main(["verify", model_ref, "--key", pub, "--identity", IDENTITY]) == 0
    assert f"verified {model_ref}: signed by {IDENTITY}" in capsys.readouterr().out
    with running_registry(tmp_path / "prod-registry") as prod:
        assert aegis.main(["promote", model_ref, f"{prod}/fraud:1.0.0_modelpack", "--key", pub]) == 0
        assert f"{prod}/fraud:1.0.0_modelpack -> {artifact}" in capsys.readouterr().out
        assert _cosign(cosign_binary, "verify", "--key", pub, f"{prod}/fraud@{artifact}") == 0

    # Publishing again changes nothing, and a version's artifact tag is never moved either.
    assert cli.main(args, _env(key_dir)) == 0
    again = capsys.readouterr().out
    assert again.count("already ->") == 2 and "signature attached" not in again
    other = [*publish_inputs(tmp_path, b"retrained", "other", model_artifact=True), "--target",
             f"{registry}/ml/fraud:1.0.0", "--signer-identity", IDENTITY]
    assert cli.main(other, _env(key_dir)) == 2
    assert "refusing to move it" in capsys.readouterr().err


def test_a_version_is_never_moved(key_dir: Path, registry: str, tmp_path: Path, capsys) -> None:
    target = ["--target", f"{registry}/ml/fraud:1.0.0", "--signer-identity", IDENTITY]
    assert cli.main([*publish_inputs(tmp_path, b"one", "a"), *target], _env(key_dir)) == 0
    first = capsys.readouterr().out.rsplit("-> ", 1)[1].strip()
    assert cli.main([*publish_inputs(tmp_path, b"two", "b"), *target], _env(key_dir)) == 2
    err = capsys.readouterr().err
    assert f"already points to {first}; refusing to move it to sha256:" in err and err.count("\n") == 1
    assert Registry.for_reference(parse(f"{registry}/ml/fraud:1.0.0")).manifest_digest("ml/fraud", "1.0.0") == first


def test_signing_mode_must_match_the_manifest(key_dir: Path, registry: str, tmp_path: Path, capsys) -> None:
    inputs = publish_inputs(tmp_path, b"weights")
    unsigned = ["--target", f"{registry}/ml/fraud:1.0.0", "--signer-identity", "unsigned"]
    assert cli.main([*inputs, *unsigned], _env(key_dir)) == 2
    assert "a signing key is set, but the image's manifest says signed_by 'unsigned'" in capsys.readouterr().err
    assert cli.main([*inputs, "--target", f"{registry}/ml/fraud:1.0.0", "--signer-identity", IDENTITY], {}) == 2
    assert "no signing key is set" in capsys.readouterr().err
    assert cli.main([*inputs, *unsigned], {}) == 0
    assert "not signed" in capsys.readouterr().out
    bad = {**_env(key_dir), "AEGIS_SIGNING_KEY_PASSWORD": "wrong"}
    assert cli.main([*inputs, "--target", f"{registry}/ml/x:1.0.0", "--signer-identity", IDENTITY], bad) == 2
    assert "wrong password" in capsys.readouterr().err


def test_promote_verifies_copies_and_tags(cosign_binary, key_dir: Path, registry: str, tmp_path: Path,
                                          capsys) -> None:
    args = [*publish_inputs(tmp_path, b"weights"), "--target", f"{registry}/staging/fraud:1.0.0", "--signer-identity", IDENTITY]
    assert cli.main(args, _env(key_dir)) == 0
    digest = capsys.readouterr().out.rsplit("-> ", 1)[1].strip()
    pub = str(key_dir / "cosign.pub")
    with running_registry(tmp_path / "prod-registry") as prod:
        assert aegis.main(["promote", f"{registry}/staging/fraud@{digest}", f"{prod}/fraud:1.0.0", "--key", pub]) == 0
        assert f"{prod}/fraud:1.0.0 -> {digest}" in capsys.readouterr().out
        assert _cosign(cosign_binary, "verify", "--key", pub, f"{prod}/fraud@{digest}") == 0
        assert _cosign(cosign_binary, "verify-attestation", "--key", pub, "--type", "cyclonedx",
                       f"{prod}/fraud@{digest}") == 0
        # Same registry: blobs are mounted, not copied.
        assert aegis.main(["promote", f"{registry}/staging/fraud@{digest}", f"{registry}/prod/fraud:1.0.0",
                           "--key", pub]) == 0
        assert "(0 blob(s) transferred)" in capsys.readouterr().out

        other = [*publish_inputs(tmp_path, b"other", "other"), "--target", f"{registry}/staging/fraud:2.0.0",
                 "--signer-identity", IDENTITY]
        assert cli.main(other, _env(key_dir)) == 0
        other_digest = capsys.readouterr().out.rsplit("-> ", 1)[1].strip()
        assert aegis.main(["promote", f"{registry}/staging/fraud@{other_digest}", f"{prod}/fraud:1.0.0",
                           "--key", pub]) == 1
        assert "refusing to move it" in capsys.readouterr().err


def test_a_tampered_signature_is_rejected(key_dir: Path, registry: str, tmp_path: Path, capsys) -> None:
    args = [*publish_inputs(tmp_path, b"weights"), "--target", f"{registry}/ml/fraud:1.0.0", "--signer-identity", IDENTITY]
    assert cli.main(args, _env(key_dir)) == 0
    digest = capsys.readouterr().out.rsplit("-> ", 1)[1].strip()
    client = Registry.for_reference(parse(f"{registry}/ml/fraud:1.0.0"))
    tag = cosign.tag_for(digest, "sig")
    _, manifest, _ = client.get_manifest("ml/fraud", tag)
    layer = cosign.existing_layers(manifest, lambda d: client.get_blob("ml/fraud", d))[0]
    forged_payload = layer.data.replace(b"cosign container image signature", b"cosign container image signature ")
    forged = cosign.artifact([cosign.Layer(layer.media_type, forged_payload, layer.annotations)])
    for blob_digest, blob in forged.blobs.items():
        if not client.blob_exists("ml/fraud", blob_digest):
            client.upload_blob("ml/fraud", blob_digest, blob)
    client.put_manifest("ml/fraud", tag, cosign.MANIFEST, forged.manifest)
    assert aegis.main(["verify", f"{registry}/ml/fraud@{digest}", "--key", str(key_dir / "cosign.pub")]) == 1
    assert "no valid signature: a signature does not verify with this key" in capsys.readouterr().err


def test_a_model_signature_over_other_weights_is_rejected(key_dir: Path, registry: str, tmp_path: Path,
                                                          capsys) -> None:
    args = [*publish_inputs(tmp_path, b"weights"), "--target", f"{registry}/ml/fraud:1.0.0", "--signer-identity", IDENTITY]
    assert cli.main(args, _env(key_dir)) == 0
    digest = capsys.readouterr().out.rsplit("-> ", 1)[1].strip()
    key = keys.load_private_key((key_dir / "cosign.key").read_bytes(), PASSWORD.encode(), "cosign.key")
    (tmp_path / "other" / "model").mkdir(parents=True)
    (tmp_path / "other" / "model" / "weights.safetensors").write_bytes(b"other weights")
    bundle = model_signature.sign(str(tmp_path / "other" / "model"), KeySigner(key))
    client = Registry.for_reference(parse(f"{registry}/ml/fraud:1.0.0"))
    swapped = cosign.artifact([cosign.Layer(model_signature.BUNDLE_MEDIA_TYPE, bundle, {})])
    for blob_digest, blob in swapped.blobs.items():
        client.upload_blob("ml/fraud", blob_digest, blob)
    client.put_manifest("ml/fraud", cosign.tag_for(digest, "msig"), cosign.MANIFEST, swapped.manifest)
    assert aegis.main(["verify", f"{registry}/ml/fraud@{digest}", "--key", str(key_dir / "cosign.pub")]) == 1
    assert "the model signature does not verify" in capsys.readouterr().err
