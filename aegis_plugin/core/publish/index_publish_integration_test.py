"""Publishing, verifying and promoting an image index (a model of two platforms) against real registries
(docker-registry on 127.0.0.1), checked by real cosign: the index and each platform's image are signed and
attested, each platform with its own SBOM."""
from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from aegis_plugin.core.oci import modelpack
from aegis_plugin.core.oci.layout import LayoutError, write_layout
from aegis_plugin.core.publish import aegis, cli, verify
from aegis_plugin.core.publish.testutil import (
    attached_layers,
    publish_inputs,
    put_attached,
    signing_key_env,
    simple_signed,
    write_public_key,
)
from aegis_plugin.core.registry.client import Registry
from aegis_plugin.core.registry.push import LayoutImage
from aegis_plugin.core.registry.reference import parse
from aegis_plugin.core.registry.testutil import INDEX, MANIFEST, running_registry
from aegis_plugin.core.sign import cosign, dsse, testutil
from aegis_plugin.core.sign.signer import KeySigner

IDENTITY = "ci@aegis.example"
PLATFORMS = ("linux/amd64", "linux/arm64")
KEY = ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def registry(tmp_path: Path):
    with running_registry(tmp_path / "registry") as address:
        yield address


def _cosign(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([testutil.cosign_binary(), *args, "--insecure-ignore-tlog=true", "--allow-http-registry"],
                          capture_output=True, text=True)


def _statements(client: Registry, digest: str) -> list:
    return [json.loads(base64.b64decode(json.loads(layer.data)["payload"]))
            for layer in attached_layers(client, "ml/fraud", digest, "att")]


def _subjects(statement: dict) -> list:
    return [f"sha256:{s['digest']['sha256']}" for s in statement["subject"]]


def test_an_image_index_is_published_signed_and_attested_per_platform(registry: str, tmp_path: Path, capsys,
                                                                      monkeypatch) -> None:
    inputs = publish_inputs(tmp_path, b"weights", model_artifact=True, platforms=PLATFORMS)
    args = [*inputs, "--target", f"{registry}/ml/fraud:1.0.0", "--signer-identity", IDENTITY]
    assert cli.main(args, signing_key_env(KEY)) == 0
    out = capsys.readouterr().out
    layout = LayoutImage.read(inputs[1])
    index, images = layout.digest, {i.platform: i.digest for i in layout.images}
    artifact = LayoutImage.read_artifact(inputs[1], modelpack.ARTIFACT_TYPE)
    assert layout.is_index and set(images) == set(PLATFORMS) and artifact is not None
    # The weights layer both platforms share is uploaded once: it, each platform's own layer and config.
    assert f"ml/fraud@{index}: 5 blob(s)" in out
    assert f"{registry}/ml/fraud:1.0.0 -> {index}" in out
    client = Registry.for_reference(parse(f"{registry}/ml/fraud:1.0.0"))
    assert client.manifest_digest("ml/fraud", "1.0.0") == index
    pushed_index = json.loads(client.get_manifest("ml/fraud", index)[1])
    assert pushed_index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert [(m["platform"]["architecture"], m["digest"]) for m in pushed_index["manifests"]] == [
        ("amd64", images["linux/amd64"]), ("arm64", images["linux/arm64"])]

    # cosign checks the index (what the tag resolves to) and each platform's image (what a runtime pulls).
    pub = write_public_key(KEY, tmp_path / "key.pub")
    for digest in (index, *images.values(), artifact.digest):
        ref = f"{registry}/ml/fraud@{digest}"
        for command in (["verify"], ["verify-attestation", "--type", "cyclonedx"],
                        ["verify-attestation", "--type", "slsaprovenance1"]):
            checked = _cosign(*command, "--key", pub, ref)
            assert checked.returncode == 0, (command, digest, checked.stderr)
    checked = _cosign("verify-attestation", "--key", pub, "--type", "cyclonedx",
                      f"{registry}/ml/fraud:1.0.0")
    assert checked.returncode == 0, checked.stderr

    # Each platform's SBOM is a statement about its image (then the index and the artifact), attached to
    # its image, the index and the artifact; the provenance names everything and is attached everywhere.
    everything = [index, *images.values(), artifact.digest]
    for platform, digest in images.items():
        (sbom,) = [s for s in _statements(client, digest) if s["predicateType"] == dsse.CYCLONEDX]
        assert _subjects(sbom) == [digest, index, artifact.digest]
        assert sbom["predicate"]["metadata"]["properties"] == [{"name": "platform", "value": platform}]
    for digest in (index, artifact.digest):
        sboms = [s for s in _statements(client, digest) if s["predicateType"] == dsse.CYCLONEDX]
        assert [_subjects(s)[0] for s in sboms] == list(images.values())
    for digest in everything:
        (slsa,) = [s for s in _statements(client, digest) if s["predicateType"] == dsse.SLSA_PROVENANCE_V1]
        assert _subjects(slsa) == everything
    # The model signature goes where the model files are: each platform's image and the artifact.
    assert client.get_manifest("ml/fraud", cosign.tag_for(index, "msig")) is None
    bundles = {d: [x.data for x in attached_layers(client, "ml/fraud", d, "msig")] for d in everything[1:]}
    assert len({b[0] for b in bundles.values()}) == 1 and all(len(b) == 1 for b in bundles.values())

    # aegis verify takes the index, and checks every platform's image in full.
    ref = f"{registry}/ml/fraud@{index}"
    assert aegis.main(["verify", ref, "--key", pub, "--identity", IDENTITY]) == 0
    verified = capsys.readouterr().out.splitlines()
    assert verified[0].startswith(f"verified {ref}: signed by {IDENTITY}") and "(image index)" in verified[0]
    for line, (platform, digest) in zip(verified[1:], images.items()):
        assert line.startswith(f"verified its {platform} image {registry}/ml/fraud@{digest}: signed by {IDENTITY}")
        assert line.endswith("(image, model signature)")
    # The weights layer both platforms share is downloaded once for their model signatures.
    downloads, download = [], Registry.download_blob
    monkeypatch.setattr(Registry, "download_blob", lambda self, repo, d, path: (downloads.append(d),
                                                                                 download(self, repo, d, path)))
    assert aegis.main(["verify", ref, "--key", pub]) == 0
    capsys.readouterr()
    # Each platform's image has the weights layer and its own: 3 distinct blobs, each downloaded once.
    assert len(downloads) == len(set(downloads)) == 3, downloads
    monkeypatch.undo()

    # Publishing again uploads nothing and attaches nothing.
    assert cli.main(args, signing_key_env(KEY)) == 0
    again = capsys.readouterr().out
    assert "no layer bytes uploaded" in again
    attaching = [line for line in again.splitlines() if line.startswith(("signature", "attestation", "model"))]
    assert len(attaching) == 4 + (2 * 3 + 4) + 3 and all("already attached" in line for line in attaching)
    assert again.count("already ->") == 2

    # A platform's image whose signature is not the signer's fails the index, naming the platform; the
    # warnings of the platform verified before it (a junk entry beside its valid signature) are not printed.
    junk = simple_signed(b"not a signature payload", KEY)
    valid = attached_layers(client, "ml/fraud", images["linux/amd64"], "sig")
    put_attached(client, "ml/fraud", images["linux/amd64"], "sig", [*valid, junk])
    assert aegis.main(["verify", ref, "--key", pub]) == 0
    assert capsys.readouterr().err.count("warning") == 1
    put_attached(client, "ml/fraud", images["linux/arm64"], "sig", [junk])
    assert aegis.main(["verify", ref, "--key", pub]) == 1
    err = capsys.readouterr().err
    assert f"aegis: {ref}: the image index's linux/arm64 image does not verify: " in err and "no valid signature" in err
    assert "warning" not in err and err.count("\n") == 1

    # An index listing an index as if it were an image is refused, even when both are signed.
    signer = KeySigner(KEY)
    name = f"{registry}/ml/fraud"
    outer = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": [
        {"mediaType": MANIFEST, "digest": index, "size": len(client.get_manifest("ml/fraud", index)[1]),
         "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
    outer_digest = client.put_manifest("ml/fraud", "outer", INDEX, outer)
    put_attached(client, "ml/fraud", outer_digest, "sig", [cosign.signature_layer(name, outer_digest, signer)])
    put_attached(client, "ml/fraud", outer_digest, "att", [
        cosign.attestation_layer(name, outer_digest, kind, {}, signer) for kind in verify.REQUIRED_ATTESTATIONS])
    assert aegis.main(["verify", f"{name}@{outer_digest}", "--key", pub]) == 1
    assert (f"the image index's linux/amd64 image does not verify: {name}@{index}: an image index, not an image"
            in capsys.readouterr().err)


def test_an_image_index_is_promoted_with_its_platforms(registry: str, tmp_path: Path, capsys) -> None:
    inputs = publish_inputs(tmp_path, b"weights", platforms=PLATFORMS)
    args = [*inputs, "--target", f"{registry}/ml/fraud:1.0.0", "--signer-identity", IDENTITY]
    assert cli.main(args, signing_key_env(KEY)) == 0
    capsys.readouterr()
    layout = LayoutImage.read(inputs[1])
    index = layout.digest
    pub = write_public_key(KEY, tmp_path / "key.pub")
    # A model signature on an index is nobody's to check (the model files are in the platforms' images):
    # promote neither checks nor copies one that someone attached.
    client = Registry.for_reference(parse(f"{registry}/ml/fraud"))
    put_attached(client, "ml/fraud", index, "msig", [cosign.Layer("text/plain", b"junk", {})])
    with running_registry(tmp_path / "prod-registry") as prod:
        assert aegis.main(["promote", f"{registry}/ml/fraud@{index}", f"{prod}/fraud:1.0.0", "--key", pub]) == 0
        out = capsys.readouterr().out
        assert f"{prod}/fraud:1.0.0 -> {index}" in out
        # Both platforms' images, then the index; the shared weights blob crosses once.
        copied = [line for line in out.splitlines() if line.startswith("copied sha256:")]
        assert [line.split()[1] for line in copied] == [*(i.digest for i in layout.images), index]
        assert "(3 blob(s) transferred)" in copied[0] and "(2 blob(s) transferred)" in copied[1]
        for digest in (index, *(i.digest for i in layout.images)):
            checked = _cosign("verify", "--key", pub, f"{prod}/fraud@{digest}")
            assert checked.returncode == 0, checked.stderr
        assert aegis.main(["verify", f"{prod}/fraud@{index}", "--key", pub]) == 0
        assert len(capsys.readouterr().out.splitlines()) == 3
        promoted = Registry.for_reference(parse(f"{prod}/fraud"))
        assert promoted.get_manifest("fraud", cosign.tag_for(index, "msig")) is None


def test_an_index_that_lists_no_image_manifest_is_refused(registry: str, tmp_path: Path, capsys) -> None:
    client = Registry.for_reference(parse(f"{registry}/ml/fraud"))
    empty = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": []}).encode()
    empty_digest = client.put_manifest("ml/fraud", "empty", INDEX, empty)
    nested = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": [
        {"mediaType": INDEX, "digest": empty_digest, "size": len(empty),
         "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
    nested_digest = client.put_manifest("ml/fraud", "nested", INDEX, nested)
    key = write_public_key(KEY, tmp_path / "key.pub")
    assert aegis.main(["verify", f"{registry}/ml/fraud@{empty_digest}", "--key", key]) == 1
    assert f"ml/fraud@{empty_digest}: the image index lists no image\n" in capsys.readouterr().err
    assert aegis.main(["verify", f"{registry}/ml/fraud@{nested_digest}", "--key", key]) == 1
    assert (f"ml/fraud@{nested_digest}: not a readable image index: it lists a '{INDEX}', not an image "
            f"manifest\n") in capsys.readouterr().err


def test_a_layout_whose_index_lists_an_index_is_refused(tmp_path: Path) -> None:
    inner = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": []}).encode()
    inner_digest = "sha256:" + hashlib.sha256(inner).hexdigest()
    outer = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": [
        {"mediaType": INDEX, "digest": inner_digest, "size": len(inner),
         "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
    outer_digest = "sha256:" + hashlib.sha256(outer).hexdigest()
    top = {"mediaType": INDEX, "digest": outer_digest, "size": len(outer),
           "annotations": {"org.opencontainers.image.ref.name": "1.0.0"}}
    write_layout(tmp_path / "oci", {inner_digest: inner, outer_digest: outer},
                 json.dumps({"schemaVersion": 2, "manifests": [top]}).encode())
    with pytest.raises(LayoutError, match=f"image index {outer_digest}: an entry is not an image manifest"):
        LayoutImage.read(str(tmp_path / "oci")).images


def test_the_sboms_must_match_the_images_platforms(tmp_path: Path, capsys) -> None:
    index_inputs = publish_inputs(tmp_path / "index", b"weights", platforms=PLATFORMS)
    one_sbom = index_inputs[:3] + index_inputs[5:]  # --layout DIR --sbom linux/arm64=… --provenance FILE
    target = ["--target", "127.0.0.1:1/ml/fraud:1.0.0", "--signer-identity", IDENTITY]
    assert cli.main([*one_sbom, *target], signing_key_env(KEY)) == 2
    assert capsys.readouterr().err == ("aegis: the image is an index over linux/amd64, linux/arm64: give one "
                                       "--sbom PLATFORM=PATH for each of them\n")
    image_inputs = publish_inputs(tmp_path / "image", b"weights")
    qualified = [*image_inputs[:3], f"linux/amd64={image_inputs[3]}", *image_inputs[4:]]
    assert cli.main([*qualified, *target], signing_key_env(KEY)) == 2
    assert capsys.readouterr().err == "aegis: the image is of one platform: give one --sbom PATH\n"
    twice = [*index_inputs, "--sbom", index_inputs[5]]
    assert cli.main([*twice, *target], signing_key_env(KEY)) == 2
    assert "platform linux/arm64's SBOM is given twice" in capsys.readouterr().err
