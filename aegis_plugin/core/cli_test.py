from __future__ import annotations

import hashlib
import json
import shutil
import struct
import tarfile
from math import prod
from pathlib import Path

from aegis_plugin.core import cli
from aegis_plugin.core.oci import layout
from aegis_plugin.testutil import modelpack_reader

CARD = """\
# Demo
## Model details
- license: Apache-2.0
- owner: ML team
## Intended use
Demos.
## Out-of-scope use
Production.
## Training data
Synthetic.
## Evaluation metrics
- auc: 0.9
## Limitations
Small.
## License
Apache-2.0
## Owner
ML team
"""


def test_files_layer_reports_hashes_and_the_parsed_model_card(tmp_path: Path) -> None:
    (tmp_path / "card.md").write_text(CARD)
    spec = {
        "mtime": 0,
        "description": "model files",
        "entries": [
            {"path": "/app/model/model_card.md", "origin": "field `model_card`", "name": "card.md",
             "source": str(tmp_path / "card.md"), "mode": 0o644, "check": "model_card"},
            {"path": "/app/manifest.yaml", "origin": "the manifest", "name": "manifest.yaml", "text": "a: 1\n",
             "mode": 0o644},
        ],
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out = tmp_path / "out"
    assert cli.main(["files-layer", "--spec", str(tmp_path / "spec.json"), "--out", str(out)]) == 0
    files = json.loads((out / cli.FILES_INFO).read_text())
    assert files == [
        {"path": "/app/manifest.yaml", "sha256": hashlib.sha256(b"a: 1\n").hexdigest(),
         "sha1": hashlib.sha1(b"a: 1\n").hexdigest(), "size": 5},
        {"path": "/app/model/model_card.md", "sha256": hashlib.sha256(CARD.encode()).hexdigest(),
         "sha1": hashlib.sha1(CARD.encode()).hexdigest(), "size": len(CARD.encode())},
    ]
    card = json.loads((out / cli.MODEL_CARD_INFO).read_text())
    assert card["fields"] == {"license": "Apache-2.0", "owner": "ML team"}
    assert card["sections"]["Intended use"] == "Demos."
    info = json.loads((out / cli.LAYER_INFO).read_text())
    blob = Path(cli.layer_blob(str(out)))
    assert blob == out / "blobs" / "sha256" / info["digest"].split(":")[1]
    assert "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest() == info["digest"]
    assert info["media_type"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert sorted(p.name for p in out.iterdir()) == ["blobs", "files.json", "layer.json", "model_card.json", "toc.json"]
    toc = json.loads((out / cli.LAYER_TOC).read_text())
    assert toc["diff_id"] == info["diff_id"] and "/app/model/model_card.md" in [e[0] for e in toc["entries"]]


def test_files_layer_without_a_card_writes_no_card(tmp_path: Path) -> None:
    spec = {"mtime": 0, "description": "app", "entries": [
        {"path": "/app/x", "origin": "o", "name": "x", "text": "", "mode": 0o644}]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    assert cli.main(["files-layer", "--spec", str(tmp_path / "spec.json"), "--out", str(tmp_path / "out")]) == 0
    assert not (tmp_path / "out" / cli.MODEL_CARD_INFO).exists()


def _weights_layer(tmp_path: Path, content: bytes, name: str) -> Path:
    (tmp_path / f"{name}.bin").write_bytes(content)
    spec = {"mtime": 0, "description": f"weights {name}", "compression": "none", "entries": [
        {"path": "/app/model/weights.safetensors", "origin": "field `weights`", "name": "w",
         "source": str(tmp_path / f"{name}.bin"), "mode": 0o644},
    ]}
    (tmp_path / f"{name}.json").write_text(json.dumps(spec))
    out = tmp_path / name
    assert cli.main(["files-layer", "--spec", str(tmp_path / f"{name}.json"), "--out", str(out)]) == 0
    return out


def test_an_uncompressed_layer_is_a_plain_tar_whose_digest_is_its_diff_id(tmp_path: Path) -> None:
    content = bytes(range(256)) * 40_000  # 10 MB: hashed on background threads
    out = _weights_layer(tmp_path, content, "w")
    info = json.loads((out / cli.LAYER_INFO).read_text())
    assert info["media_type"] == "application/vnd.oci.image.layer.v1.tar"
    assert info["digest"] == info["diff_id"]
    blob = Path(cli.layer_blob(str(out)))
    data = blob.read_bytes()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == info["digest"] and info["size"] == len(data)
    assert content in data  # stored as is
    (facts,) = json.loads((out / cli.FILES_INFO).read_text())
    assert facts == {"path": "/app/model/weights.safetensors", "sha256": hashlib.sha256(content).hexdigest(),
                     "sha1": hashlib.sha1(content).hexdigest(), "size": len(content)}
    # The same file gives the same blob wherever it is built.
    again = _weights_layer(tmp_path, content, "again")
    assert Path(cli.layer_blob(str(again))).read_bytes() == data


def _image_spec(layers: list[str], docker_archive: bool) -> dict:
    return {"layers": layers, "architecture": "amd64", "os": "linux", "created": 0, "user": "65532:65532",
            "env": [], "entrypoint": ["/bin/true"], "working_dir": "/app", "labels": {}, "annotations": {},
            "ref_name": "1.0.0", "repo_tags": ["aegis/x:1.0.0"], "docker_archive": docker_archive}


def test_image_writes_a_layout_without_copying_the_layer_blobs(tmp_path: Path) -> None:
    layer = _weights_layer(tmp_path, b"w" * 1000, "w")
    (layer / "blobs").rename(tmp_path / "moved-blobs")  # the image step reads the descriptor only
    (tmp_path / "image.json").write_text(json.dumps(_image_spec([str(layer)], docker_archive=False)))
    out = tmp_path / "out"
    assert cli.main(["image", "--spec", str(tmp_path / "image.json"), "--out", str(out)]) == 0
    summary = json.loads((out / "image.json").read_text())
    blobs = {p.name for p in (out / "oci" / "blobs" / "sha256").iterdir()}
    assert blobs == {summary["manifest_digest"][7:], summary["config_digest"][7:]}
    assert summary["layers"][0]["media_type"] == "application/vnd.oci.image.layer.v1.tar"
    assert not (out / "image.tar").exists()


def test_image_writes_image_tar_when_asked(tmp_path: Path) -> None:
    layer = _weights_layer(tmp_path, b"w" * 1000, "w")
    (tmp_path / "image.json").write_text(json.dumps(_image_spec([str(layer)], docker_archive=True)))
    out = tmp_path / "out"
    assert cli.main(["image", "--spec", str(tmp_path / "image.json"), "--out", str(out)]) == 0
    with tarfile.open(out / "image.tar") as tar:
        names = set(tar.getnames())
    digest = json.loads((layer / cli.LAYER_INFO).read_text())["digest"]
    assert f"blobs/sha256/{digest[7:]}" in names and "manifest.json" in names
    assert sorted(p.name for p in out.iterdir()) == ["image.json", "image.tar", "oci"]


def test_image_writes_its_top_layer_as_the_files_layer_step_would(tmp_path: Path, monkeypatch) -> None:
    layer = _weights_layer(tmp_path, b"w" * 1000, "w")
    (tmp_path / "sbom.spdx.json").write_text('{"spdxVersion": "SPDX-2.3"}')
    top = {"mtime": 0, "description": "SBOM", "entries": [
        {"path": "/app/sbom.spdx.json", "origin": "the SBOM", "name": "sbom.spdx.json",
         "source": str(tmp_path / "sbom.spdx.json"), "mode": 0o644}]}
    (tmp_path / "top.json").write_text(json.dumps(top))
    assert cli.main(["files-layer", "--spec", str(tmp_path / "top.json"), "--out", str(tmp_path / "own")]) == 0
    own = json.loads((tmp_path / "own" / cli.LAYER_INFO).read_text())
    (tmp_path / "image.json").write_text(json.dumps({**_image_spec([str(layer)], False), "top_layer": top}))
    monkeypatch.chdir(tmp_path)  # the step's working directory: the top layer is written beside out/
    assert cli.main(["image", "--spec", "image.json", "--out", "out"]) == 0
    summary = json.loads((tmp_path / "out" / "image.json").read_text())
    assert [entry["digest"] for entry in summary["layers"]][1:] == [own["digest"]]
    assert summary["layers"][1]["description"] == "SBOM"
    blob = tmp_path / "out" / "oci" / "blobs" / "sha256" / own["digest"][7:]
    assert blob.read_bytes() == Path(cli.layer_blob(str(tmp_path / "own"))).read_bytes()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["image.json", "oci"]


def _safetensors(shapes: dict[str, list[int]]) -> bytes:
    """A valid F32 safetensors file of zeros with these tensor shapes."""
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = 4 * prod(shape)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + b"\0" * offset


def _files_layer(tmp_path: Path, name: str, files: dict[str, tuple[bytes, str | None]], compression: str,
                 checkpoint: dict[str, str] | None = None) -> Path:
    entries = []
    for path, (content, check) in files.items():
        source = tmp_path / f"{name}-{Path(path).name}"
        source.write_bytes(content)
        entries.append({"path": path, "origin": "field `weights`", "name": Path(path).name, "source": str(source),
                        "mode": 0o644, **({"check": check} if check else {})})
    (tmp_path / f"{name}.spec.json").write_text(json.dumps(
        {"mtime": 0, "description": name, "compression": compression, "entries": entries,
         **({"checkpoint": checkpoint} if checkpoint else {})}))
    assert cli.main(["files-layer", "--spec", str(tmp_path / f"{name}.spec.json"), "--out", str(tmp_path / name)]) == 0
    return tmp_path / name


def test_image_writes_the_model_artifact_from_its_own_layers(tmp_path: Path) -> None:
    weights = _safetensors({"w": [13, 16], "b": [16]})
    model = {
        "weights": {"/app/model/weights.safetensors": (weights, None)},
        "files": {"/app/model/tokenizer.json": (b'{"v": 1}', "json")},
        "card": {"/app/model/model_card.md": (CARD.encode(), "model_card")},
    }
    # The card's layer step checks the checkpoint as a whole, and reports its tensors.
    checkpoint = {"weights.safetensors": str(tmp_path / "weights-weights.safetensors")}
    layers = {name: _files_layer(tmp_path, name, files, "none" if name == "weights" else "gzip",
                                 checkpoint if name == "card" else None) for name, files in model.items()}
    assert json.loads((layers["card"] / cli.TENSORS_INFO).read_text()) == {"parameters": 224, "dtypes": ["F32"]}
    spec = _image_spec([str(p) for p in layers.values()], docker_archive=False)
    spec["model_artifact"] = {
        "layers": [{"layer": str(layers["weights"]), "kind": "weight", "filepath": "app/model/weights.safetensors"},
                   {"layer": str(layers["files"]), "kind": "weight.config", "filepath": "app/model"},
                   {"layer": str(layers["card"]), "kind": "doc", "filepath": "app/model/model_card.md"}],
        "descriptor": {"name": "demo", "version": "1.0.0"},
        "config": {"format": "safetensors", "paramSize": "0.2K", "precision": "float32"},
        "annotations": {"aegis.model.framework": "numpy==2.4.6"},
        "ref_name": "1.0.0_modelpack",
    }
    (tmp_path / "image.json").write_text(json.dumps(spec))
    out = tmp_path / "out"
    assert cli.main(["image", "--spec", str(tmp_path / "image.json"), "--out", str(out)]) == 0
    for layer in layers.values():  # Pants merges the layer steps' blobs into the layout
        for blob in (layer / "blobs" / "sha256").iterdir():
            shutil.copy(blob, out / "oci" / "blobs" / "sha256" / blob.name)
    summary = json.loads((out / "image.json").read_text())

    artifact = modelpack_reader.read(out / "oci", "1.0.0_modelpack")
    assert artifact.manifest_digest == summary["model_artifact"]["manifest_digest"]
    assert artifact.files == {path.lstrip("/"): content for files in model.values()
                              for path, (content, _) in files.items()}
    image_layers = [layer["digest"] for layer in summary["layers"]]
    assert [layer["digest"] for layer in artifact.manifest["layers"]] == image_layers  # the same blobs
    assert sorted(artifact.kinds) == ["doc", "weight", "weight.config"]
    assert artifact.config["descriptor"] == {"name": "demo", "version": "1.0.0"}
    assert artifact.manifest["annotations"] == {"aegis.model.framework": "numpy==2.4.6"}
    # The layout's image is still found without a tag, as every reader of it does.
    assert layout.select_manifest(out / "oci")["digest"] == summary["manifest_digest"]


def test_a_model_artifact_of_a_layer_the_image_lacks_is_one_line(tmp_path: Path, capsys) -> None:
    layer = _weights_layer(tmp_path, b"w" * 1000, "w")
    spec = _image_spec([str(layer)], docker_archive=False)
    spec["model_artifact"] = {"layers": [{"layer": "elsewhere", "kind": "weight", "filepath": "w"}],
                              "descriptor": {"name": "m"}, "config": {}, "annotations": {}, "ref_name": "1_modelpack"}
    (tmp_path / "image.json").write_text(json.dumps(spec))
    assert cli.main(["image", "--spec", str(tmp_path / "image.json"), "--out", str(tmp_path / "out")]) == 2
    assert "layer 'elsewhere' is not one of the image's layers" in capsys.readouterr().err
