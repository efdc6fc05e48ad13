"""Weights at scale: one plain-tar layer per weights file, a sharded Hugging Face checkpoint checked as a whole,
the same weights giving the same blob in two images, edits that re-ship only what changed, and the result read
back by real tools (umoci, skopeo through a real docker-registry).

The figures (2 GiB, against the `sha256sum && cp` floor and buildah) come from build-support/bench_big_model.sh;
this test keeps CI short with one 64 MiB shard, enough to take the layer writer's multi-threaded hashing path.
"""
from __future__ import annotations

import json
import struct
import subprocess
import tarfile
from pathlib import Path

from aegis_plugin.core.registry.testutil import running_registry
from aegis_plugin.testutil import modelpack_reader
from tests.e2e.clones import Clone, make_clone

PLAIN_TAR = "application/vnd.oci.image.layer.v1.tar"
SHARDS = ("model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors")
TARGETS = """
files(name="checkpoint", sources=["checkpoint/*"])

model_package(
    name="fraud-sharded",
    model_id="fraud-detector",
    version="1.0.0",
    weights=":checkpoint",
    tokenizer=":tokenizer",
    model_card="model_card.md",
    handler="models/fraud/server/handler.py",
    framework="numpy",
    size_budget=1000,
)

# The demo's weights again, in another image: the weights layer must be the very same blob.
model_package(
    name="fraud-again",
    model_id="fraud-detector",
    version="1.0.0",
    weights=":weights",
    tokenizer=":tokenizer",
    model_card="model_card.md",
    handler="models/fraud/server/handler.py",
    framework="numpy",
    annotations={"org.example.variant": "again"},
    size_budget=60,
)
"""


def _stored(blobs: Path) -> dict[str, int]:
    """digest -> size of every blob a docker-registry's filesystem storage holds (`sha256/<ab>/<hex>/data`)."""
    return {f"sha256:{data.parent.name}": data.stat().st_size for data in blobs.glob("sha256/*/*/data")}


def _safetensors(path: Path, tensors: dict[str, int], fill: int) -> None:
    """A valid safetensors file of F32 vectors (name -> element count), each byte `fill`."""
    header, offset = {}, 0
    for name, count in tensors.items():
        header[name] = {"dtype": "F32", "shape": [count], "data_offsets": [offset, offset + 4 * count]}
        offset += 4 * count
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        chunk = bytes([fill]) * (1 << 20)
        while offset > 0:
            f.write(chunk[: min(offset, len(chunk))])
            offset -= len(chunk)


def _write_checkpoint(root: Path, second_fill: int = 2) -> None:
    checkpoint = root / "models/fraud/checkpoint"
    checkpoint.mkdir(exist_ok=True)
    layout = {SHARDS[0]: {"embed.weight": 16 << 20}, SHARDS[1]: {"layers.0.weight": 1024}, SHARDS[2]: {"head.weight": 8}}
    for i, (shard, tensors) in enumerate(layout.items()):
        _safetensors(checkpoint / shard, tensors, second_fill if i == 1 else i + 1)
    weight_map = {name: shard for shard, tensors in layout.items() for name in tensors}
    total = sum(4 * n for tensors in layout.values() for n in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (checkpoint / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    (checkpoint / "config.json").write_text('{"architectures": ["Demo"], "hidden_size": 8}\n')


def _summary(clone: Clone, name: str) -> dict:
    return clone.image_summary(f"models/fraud/{name}")


def _members(clone: Clone, name: str, digest: str) -> list[str]:
    blob = clone.root / "dist/models/fraud" / name / "oci/blobs/sha256" / digest.split(":")[1]
    with tarfile.open(blob) as tar:
        return sorted(m.name for m in tar.getmembers() if m.isfile())


def test_sharded_checkpoint_layers_shared_blobs_and_edits(tmp_path: Path) -> None:
    clone = make_clone(tmp_path, "big")
    _write_checkpoint(clone.root)
    with open(clone.root / "models/fraud/BUILD", "a") as build:
        build.write(TARGETS)
    clone.git("add", "-A")
    clone.git("commit", "-qm", "a sharded checkpoint")
    clone.pants("package", "models/fraud::")

    sharded = _summary(clone, "fraud-sharded")
    descriptions = [layer["description"] for layer in sharded["layers"]]
    assert descriptions[2:] == [*(f"model weights {s}" for s in SHARDS), "model files", "model card", "app", "SBOM"]
    media = [layer["media_type"] for layer in sharded["layers"]]
    assert media[2:5] == [PLAIN_TAR] * 3 and all(m.endswith("+gzip") for m in media[:2] + media[5:])
    for layer, shard in zip(sharded["layers"][2:5], SHARDS):
        assert _members(clone, "fraud-sharded", layer["digest"]) == [f"app/model/{shard}"]
    assert _members(clone, "fraud-sharded", sharded["layers"][5]["digest"]) == [
        "app/model/config.json", "app/model/model.safetensors.index.json", "app/model/tokenizer.json",
    ]
    assert _members(clone, "fraud-sharded", sharded["layers"][6]["digest"]) == ["app/model/model_card.md"]
    bom = json.loads((clone.root / "dist/models/fraud/fraud-sharded/sbom.cdx.json").read_text())
    assert all(f"/app/model/{shard}" in json.dumps(bom) for shard in SHARDS)

    # The same weights file is the same blob in every image that carries it.
    fraud, again = _summary(clone, "fraud"), _summary(clone, "fraud-again")
    assert fraud["layers"][2]["digest"] == again["layers"][2]["digest"]
    assert fraud["manifest_digest"] != again["manifest_digest"]

    # Real tools read the layout with its plain-tar layers: umoci unpacks it, and skopeo copies it through a
    # real registry and back without changing a digest.
    layout = clone.root / "dist/models/fraud/fraud-sharded/oci"
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{layout}:1.0.0", str(bundle)],
                   check=True, capture_output=True)
    assert (bundle / "rootfs/app/model" / SHARDS[0]).stat().st_size > 64 << 20

    # The ModelPack artifact beside the image: read by a reader written from the spec's text, its files are the
    # image's /app/model/ byte for byte, and its layers are the image's own blobs.
    artifact = modelpack_reader.read(layout, "1.0.0_modelpack")
    assert artifact.manifest_digest == sharded["model_artifact"]["manifest_digest"]
    in_image = {str(p.relative_to(bundle / "rootfs")): p.read_bytes()
                for p in (bundle / "rootfs/app/model").iterdir()}
    assert artifact.files == in_image
    assert {layer["digest"] for layer in artifact.manifest["layers"]} == {
        layer["digest"] for layer in sharded["layers"][2:7]}
    assert artifact.kinds["weight"] == [layer["digest"] for layer in sharded["layers"][2:5]]
    assert artifact.config["config"]["format"] == "safetensors" and artifact.config["descriptor"]["version"] == "1.0.0"

    # Both go through a real registry: skopeo pushes the image, then the artifact, and copies each to a second
    # registry and back without changing a digest. The registry stores each weight blob once, and the artifact
    # adds only its config and manifest to what the image stored.
    with running_registry(tmp_path / "registry") as registry, running_registry(tmp_path / "second") as second:
        # (skopeo would otherwise gzip the plain-tar layers on the way: a new image, not the one we built)
        skopeo = ["skopeo", "copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false",
                  "--src-tls-verify=false"]
        storage = tmp_path / "registry/storage/docker/registry/v2/blobs"
        pushed = f"docker://{registry}/aegis/fraud-sharded"
        subprocess.run([*skopeo, f"oci:{layout}:1.0.0", f"{pushed}:1.0.0"], check=True, capture_output=True)
        image_only = _stored(storage)
        subprocess.run([*skopeo, f"oci:{layout}:1.0.0_modelpack", f"{pushed}:1.0.0_modelpack"],
                       check=True, capture_output=True)
        both = _stored(storage)
        added = {digest: size for digest, size in both.items() if digest not in image_only}
        assert sorted(added) == sorted([artifact.manifest_digest, artifact.manifest["config"]["digest"]])
        print(f"registry storage: image {sum(image_only.values())} bytes; image and ModelPack artifact "
              f"{sum(both.values())} bytes (+{sum(added.values())})")
        for tag in ("1.0.0", "1.0.0_modelpack"):
            subprocess.run([*skopeo, f"{pushed}:{tag}", f"docker://{second}/aegis/fraud-sharded:{tag}"],
                           check=True, capture_output=True)
            subprocess.run([*skopeo, "--dest-oci-accept-uncompressed-layers", f"docker://{second}/aegis/"
                            f"fraud-sharded:{tag}", f"oci:{tmp_path / 'back'}:{tag}"], check=True, capture_output=True)
    back = json.loads((tmp_path / "back/index.json").read_text())
    assert [m["digest"] for m in back["manifests"]] == [sharded["manifest_digest"], artifact.manifest_digest]
    assert modelpack_reader.read(tmp_path / "back", "1.0.0_modelpack").files == in_image

    # Without the artifact (`[aegis] model_artifact = false`) the layout holds the image alone, byte for byte the
    # same image: the artifact only ever adds beside it.
    clone.pants("--no-aegis-model-artifact", "package", "models/fraud:fraud-sharded")
    alone = json.loads((layout / "index.json").read_text())["manifests"]
    assert [m["digest"] for m in alone] == [sharded["manifest_digest"]] and "model_artifact" not in _summary(
        clone, "fraud-sharded")

    # Retraining that changes one shard re-ships that shard (and the app and SBOM layers, which name the new
    # revision); every other layer is reused as is.
    _write_checkpoint(clone.root, second_fill=9)
    clone.git("commit", "-qam", "retrain one shard")
    clone.pants("package", "models/fraud:fraud-sharded")
    retrained = [layer["digest"] for layer in _summary(clone, "fraud-sharded")["layers"]]
    before = [layer["digest"] for layer in sharded["layers"]]
    assert [a == b for a, b in zip(before, retrained)] == [True, True, True, False, True, True, True, False, False]

    # An index that disagrees with the shards stops the build, naming the target, field and file.
    index_path = clone.root / "models/fraud/checkpoint/model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"]["head.weight"] = SHARDS[0]
    index_path.write_text(json.dumps(index))
    failed = clone.pants("package", "models/fraud:fraud-sharded", check=False)
    assert failed.returncode != 0
    assert "models/fraud:fraud-sharded: field `weights`: model.safetensors.index.json: tensor 'head.weight'" in failed.stderr
    assert "Traceback" not in failed.stderr
