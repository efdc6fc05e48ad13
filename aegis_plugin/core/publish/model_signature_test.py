"""Which files the model signature covers: the model files of the image's final filesystem, whichever layers
hold them (an Aegis image keeps each weights file in a layer of its own, below the model's small files)."""
import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from aegis_plugin.core.publish.model_signature import ModelSignatureError, extract_model


def layer(path: Path, files: dict, compression: str = "") -> str:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    if compression == "zstd":
        import zstandard

        path.write_bytes(zstandard.ZstdCompressor().compress(raw.getvalue()))
    else:
        path.write_bytes(gzip.compress(raw.getvalue(), mtime=0) if compression == "gzip" else raw.getvalue())
    return str(path)


@pytest.mark.parametrize("compression", ["gzip", "zstd"])  # of the layers other than the weights'
def test_every_model_file_of_every_layer_is_extracted(tmp_path: Path, compression: str) -> None:
    blobs = {
        "sha256:base": layer(tmp_path / "base", {"etc/motd": b"m"}, compression),
        "sha256:weights": layer(tmp_path / "weights", {"app/model/weights.safetensors": b"w"}),
        "sha256:shard": layer(tmp_path / "shard", {"app/model/old.safetensors": b"o"}),
        "sha256:model": layer(tmp_path / "model", {"app/model/model_card.md": b"c", "app/model/tokenizer.json": b"t",
                                                   "app/model/.wh.old.safetensors": b""}, compression),
        "sha256:app": layer(tmp_path / "app", {"app/server/handler.py": b"h", "app/model/sub/x": b"nested"}),
    }
    manifest = json.dumps({"layers": [{"digest": d} for d in ("sha256:base", "sha256:shard", "sha256:weights",
                                                                "sha256:model", "sha256:app")]}).encode()
    out = tmp_path / "out"
    out.mkdir()
    names = extract_model(manifest, blobs.__getitem__, str(out))
    # The weights below the card and tokenizer are signed too; a whited-out file and a nested one are not.
    assert names == ["model_card.md", "tokenizer.json", "weights.safetensors"]
    assert (out / "weights.safetensors").read_bytes() == b"w" and sorted(p.name for p in out.iterdir()) == names


def test_an_image_without_model_files(tmp_path: Path) -> None:
    manifest = json.dumps({"layers": [{"digest": "sha256:a"}]}).encode()
    with pytest.raises(ModelSignatureError, match="no files under /app/model/"):
        extract_model(manifest, {"sha256:a": layer(tmp_path / "a", {"etc/motd": b"m"})}.__getitem__, str(tmp_path))
