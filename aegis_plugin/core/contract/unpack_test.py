from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from pathlib import Path
from typing import Any, Optional

import pytest

from aegis_plugin.core.contract.unpack import ImageConfig, UnpackError, unpack
from aegis_plugin.core.oci.layout import REF_NAME_ANNOTATION, LayoutError

# A refused image: its layout or a blob (the layout reader), or what a layer does to the rootfs (the unpacker).
REFUSED = (LayoutError, UnpackError)

# --- building tiny layouts ----------------------------------------------------------------------------

# A layer is a list of members: (name, kind, extra) with kind one of file/dir/symlink/hardlink/fifo/chr.
Member = tuple


def _tar(members: list[Member]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, *rest in members:
            extra: dict[str, Any] = rest[0] if rest else {}
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            info.uid = info.gid = extra.get("uid", 0)
            data = b""
            if kind == "file":
                data = extra.get("data", b"")
                info.size = len(data)
                info.mode = extra.get("mode", 0o644)
            elif kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, extra.get("mode", 0o755)
            elif kind == "symlink":
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, extra["target"], 0o777
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, extra["target"]
            elif kind == "fifo":
                info.type, info.mode = tarfile.FIFOTYPE, 0o600
            elif kind == "chr":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            tar.addfile(info, io.BytesIO(data) if kind == "file" else None)
    return buffer.getvalue()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _compress(tar: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(tar, mtime=0)
    if compression == "zstd":
        import zstandard

        half = len(tar) // 2
        return zstandard.ZstdCompressor().compress(tar[:half]) + zstandard.ZstdCompressor().compress(tar[half:])
    return tar


class Layout:
    """An OCI layout on disk, written from layer member lists."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        self.manifests: list[dict] = []

    def blob(self, data: bytes) -> str:
        digest = _digest(data)
        (self.root / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(data)
        return digest

    def path_of(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / digest.split(":")[1]

    def add_image(
        self,
        layers: list[list[Member]],
        ref: Optional[str] = "1.0.0",
        config: Optional[dict] = None,
        compression: str = "gzip",  # or "zstd" (two frames a layer, as Aegis writes many) or "none"
        diff_ids: Optional[list[str]] = None,
    ) -> dict:
        layer_descriptors, computed_diff_ids = [], []
        for members in layers:
            tar = _tar(members)
            computed_diff_ids.append(_digest(tar))
            blob = _compress(tar, compression)
            media_type = "application/vnd.oci.image.layer.v1.tar" + ("" if compression == "none" else f"+{compression}")
            layer_descriptors.append({"mediaType": media_type, "digest": self.blob(blob), "size": len(blob)})
        config_blob = json.dumps({
            "architecture": "amd64", "os": "linux",
            "config": config if config is not None else {
                "Entrypoint": ["/usr/bin/python3.11", "-m", "srv"], "Cmd": ["--flag"],
                "Env": ["PATH=/usr/bin", "AEGIS_PORT=8080", "EMPTY="], "User": "65532:65532", "WorkingDir": "/app",
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids if diff_ids is not None else computed_diff_ids},
        }).encode()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": self.blob(config_blob),
                       "size": len(config_blob)},
            "layers": layer_descriptors,
        }).encode()
        descriptor = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": self.blob(manifest),
                      "size": len(manifest)}
        if ref is not None:
            descriptor["annotations"] = {REF_NAME_ANNOTATION: ref}
        self.manifests.append(descriptor)
        (self.root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": self.manifests}))
        return {"manifest": descriptor, "layers": layer_descriptors, "config": json.loads(manifest)["config"]}


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path / "layout")


def tree(root: Path) -> dict[str, str]:
    """Every entry under root: 'file:<content>', 'dir', 'link:<target>'."""
    result = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                result[rel] = f"link:{os.readlink(path)}"
            elif path.is_dir():
                result[rel] = "dir"
            elif stat.S_ISFIFO(path.lstat().st_mode):
                result[rel] = "fifo"
            else:
                result[rel] = "file:" + path.read_bytes().decode()
    return result


# --- tests --------------------------------------------------------------------------------------------


def test_files_dirs_links_modes_and_config(layout: Layout, tmp_path: Path) -> None:
    image = layout.add_image([[
        ("app", "dir", {"mode": 0o750}),
        ("app/run.sh", "file", {"data": b"#!/bin/sh\n", "mode": 0o755}),
        ("./app/data.txt", "file", {"data": b"data", "mode": 0o600}),
        ("/app/abs.txt", "file", {"data": b"absolute names stay inside"}),
        ("app/current", "symlink", {"target": "data.txt"}),
        ("app/etc-link", "symlink", {"target": "/etc/passwd"}),  # an absolute symlink is fine as a leaf
        ("app/hard", "hardlink", {"target": "app/data.txt"}),
        ("deep/er/file", "file", {"data": b"parents are created"}),
        ("run/pipe", "fifo"),
        ("dev/null", "chr"),
    ]])
    rootfs = tmp_path / "rootfs"
    result = unpack(layout.root, rootfs)

    assert tree(rootfs) == {
        "app": "dir", "app/run.sh": "file:#!/bin/sh\n", "app/data.txt": "file:data",
        "app/abs.txt": "file:absolute names stay inside", "app/current": "link:data.txt",
        "app/etc-link": "link:/etc/passwd", "app/hard": "file:data", "deep": "dir", "deep/er": "dir",
        "deep/er/file": "file:parents are created", "run": "dir", "run/pipe": "fifo",  # devices: skipped
    }
    assert stat.S_IMODE((rootfs / "app").stat().st_mode) == 0o750
    assert stat.S_IMODE((rootfs / "app/run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((rootfs / "app/data.txt").stat().st_mode) == 0o600
    assert (rootfs / "app/hard").stat().st_ino == (rootfs / "app/data.txt").stat().st_ino
    assert result.manifest_digest == image["manifest"]["digest"]
    assert result.config_digest == image["config"]["digest"]
    assert result.config == ImageConfig(
        entrypoint=("/usr/bin/python3.11", "-m", "srv"), cmd=("--flag",),
        env=("PATH=/usr/bin", "AEGIS_PORT=8080", "EMPTY="), user="65532:65532", working_dir="/app",
        architecture="amd64", os="linux",
    )
    assert result.config.argv == ["/usr/bin/python3.11", "-m", "srv", "--flag"]
    assert result.config.env_dict() == {"PATH": "/usr/bin", "AEGIS_PORT": "8080", "EMPTY": ""}


@pytest.mark.skipif(os.geteuid() != 0, reason="keeping owners needs root")
def test_owners_are_kept_as_root(layout: Layout, tmp_path: Path) -> None:
    layout.add_image([[("home/nonroot", "dir", {"uid": 65532}), ("etc/secret", "file", {"data": b"s"})]])
    unpack(layout.root, tmp_path / "rootfs")
    assert (tmp_path / "rootfs/home/nonroot").stat().st_uid == 65532
    assert (tmp_path / "rootfs/etc/secret").stat().st_uid == 0


def test_later_layers_replace_entries(layout: Layout, tmp_path: Path) -> None:
    layout.add_image([
        [("a", "dir"), ("a/x", "file", {"data": b"x"}), ("b", "file", {"data": b"b"}),
         ("c", "file", {"data": b"old"}), ("c-link", "hardlink", {"target": "c"}), ("d", "symlink", {"target": "b"})],
        [("a", "file", {"data": b"a is a file now"}), ("b", "dir"), ("b/y", "file", {"data": b"y"}),
         ("c", "file", {"data": b"new"}), ("d", "file", {"data": b"not written through the old symlink"})],
    ])
    rootfs = tmp_path / "rootfs"
    unpack(layout.root, rootfs)
    assert tree(rootfs) == {
        "a": "file:a is a file now", "b": "dir", "b/y": "file:y", "c": "file:new",
        "c-link": "file:old",  # a rewritten file is a new inode: the old hardlink keeps the old content
        "d": "file:not written through the old symlink",
    }


def test_whiteouts(layout: Layout, tmp_path: Path) -> None:
    layout.add_image([
        [("a/x", "file", {"data": b"x"}), ("a/y", "file", {"data": b"y"}), ("gone/deep/f", "file", {"data": b"f"}),
         ("keep", "file", {"data": b"k"})],
        [("a/.wh.x", "file"), (".wh.gone", "file"), (".wh.never-existed", "file"),
         ("new", "file", {"data": b"n"}), ("new-dir/.wh.nothing-there", "file"),
         ("a/.wh..wh.plnk", "file")],  # AUFS metadata is ignored
    ])
    rootfs = tmp_path / "rootfs"
    unpack(layout.root, rootfs)
    assert tree(rootfs) == {"a": "dir", "a/y": "file:y", "keep": "file:k", "new": "file:n"}


def test_opaque_whiteout_hides_lower_layers_only(layout: Layout, tmp_path: Path) -> None:
    layout.add_image([
        [("d/1", "file", {"data": b"1"}), ("d/sub/2", "file", {"data": b"2"}), ("d/sub/3", "file", {"data": b"3"}),
         ("other/4", "file", {"data": b"4"})],
        # Entries of the same layer survive, whether they come before or after the opaque marker.
        [("d/sub/5", "file", {"data": b"5"}), ("d/.wh..wh..opq", "file"), ("d/6", "file", {"data": b"6"})],
    ])
    rootfs = tmp_path / "rootfs"
    unpack(layout.root, rootfs)
    assert tree(rootfs) == {"d": "dir", "d/sub": "dir", "d/sub/5": "file:5", "d/6": "file:6",
                            "other": "dir", "other/4": "file:4"}


def test_whiteout_does_not_hide_its_own_layer(layout: Layout, tmp_path: Path) -> None:
    layout.add_image([
        [("f", "file", {"data": b"lower"}), ("g/old", "file", {"data": b"old"})],
        [("f", "file", {"data": b"upper"}), (".wh.f", "file"), ("g/new", "file", {"data": b"new"}), (".wh.g", "file")],
    ])
    rootfs = tmp_path / "rootfs"
    unpack(layout.root, rootfs)
    assert tree(rootfs) == {"f": "file:upper", "g": "dir", "g/new": "file:new"}


def test_an_upper_layer_never_writes_through_a_lower_layers_symlink(layout: Layout, tmp_path: Path) -> None:
    """Paths are paths (overlay filesystems, go-containerregistry): entries below a lower layer's symlink make a
    directory there, whatever the symlink points at, inside the rootfs or out."""
    layout.add_image([
        [("usr/lib", "dir"), ("usr/lib/libm.so", "file", {"data": b"m"}), ("lib", "symlink", {"target": "usr/lib"}),
         ("etc2", "symlink", {"target": "/tmp"}), ("up", "symlink", {"target": "../.."})],
        [("lib/libc.so", "file", {"data": b"c"}), ("etc2/evil", "file", {"data": b"e"}),
         ("up/evil", "file", {"data": b"u"})],
    ])
    rootfs = tmp_path / "rootfs"
    unpack(layout.root, rootfs)
    assert tree(rootfs) == {
        "usr": "dir", "usr/lib": "dir", "usr/lib/libm.so": "file:m", "lib": "dir", "lib/libc.so": "file:c",
        "etc2": "dir", "etc2/evil": "file:e", "up": "dir", "up/evil": "file:u",
    }


def test_within_a_layer_the_last_entry_of_a_path_wins(layout: Layout, tmp_path: Path) -> None:
    layout.add_image([
        [("keep", "file", {"data": b"lower"})],
        [("f", "file", {"data": b"first"}), ("f-link", "hardlink", {"target": "f"}), ("f", "file", {"data": b"last"}),
         ("d", "dir"), ("d/gone", "file", {"data": b"g"}), ("d", "symlink", {"target": "keep"}),
         ("s", "symlink", {"target": "keep"}), ("s", "dir"), ("s/x", "file", {"data": b"x"})],
    ])
    rootfs = tmp_path / "rootfs"
    unpack(layout.root, rootfs)
    assert tree(rootfs) == {
        "keep": "file:lower", "f": "file:last",
        "f-link": "file:first",  # linked to the entry before it, which the later `f` replaced
        "d": "link:keep", "s": "dir", "s/x": "file:x",
    }


@pytest.mark.parametrize(
    "layers, message",
    [
        ([[("../evil", "file", {"data": b"!"})]], "contains '..'"),
        ([[("app/../../evil", "file", {"data": b"!"})]], "contains '..'"),
        ([[("a/b", "dir"), ("a/b/up", "symlink", {"target": "../../../outside"}), ("a/b/up/evil", "file")]],
         "/a/b/up is not a directory in its own layer"),
        ([[("x", "file", {"data": b"x"}), ("link", "hardlink", {"target": "../x"})]], "contains '..'"),
        ([[("abs", "symlink", {"target": "/etc"}), ("link", "hardlink", {"target": "abs/passwd"})]],
         "the target is not an existing file"),
        ([[("loop", "symlink", {"target": "loop"}), ("loop/f", "file")]], "/loop is not a directory"),
        ([[("f", "file"), ("f/g", "file")]], "/f is not a directory"),
        ([[("link", "hardlink", {"target": "missing"})]], "the target is not an existing file"),
        ([[("h", "file"), ("h", "hardlink", {"target": "h"})]], "links to itself"),
    ],
    ids=["dotdot", "nested-dotdot", "same-layer-escape", "hardlink-dotdot", "hardlink-through-absolute-symlink",
         "symlink-loop", "file-as-parent", "dangling-hardlink", "hardlink-to-itself"],
)
def test_escapes_and_bad_members_are_refused(
    layout: Layout, tmp_path: Path, layers: list, message: str
) -> None:
    layout.add_image(layers)
    rootfs = tmp_path / "sub" / "rootfs"
    with pytest.raises(REFUSED, match=message):
        unpack(layout.root, rootfs)
    assert not rootfs.exists(), "a failed unpack removes its partial rootfs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layout", "sub"]
    assert list((tmp_path / "sub").iterdir()) == []


def test_layer_digest_mismatch(layout: Layout, tmp_path: Path) -> None:
    image = layout.add_image([[("a", "file", {"data": b"original"})], [("b", "file", {"data": b"b"})]])
    layer = image["layers"][0]["digest"]
    tampered = gzip.compress(_tar([("a", "file", {"data": b"tampered"})]), mtime=0)
    path = layout.path_of(layer)
    assert len(tampered) == path.stat().st_size  # same size: only the digest can tell
    path.write_bytes(tampered)
    with pytest.raises(REFUSED, match=f"layer {layer}: content digest is sha256:[0-9a-f]{{64}}"):
        unpack(layout.root, tmp_path / "rootfs")
    assert not (tmp_path / "rootfs").exists()


def test_layer_size_mismatch(layout: Layout, tmp_path: Path) -> None:
    image = layout.add_image([[("a", "file", {"data": b"a"})]])
    path = layout.path_of(image["layers"][0]["digest"])
    path.write_bytes(path.read_bytes() + b"trailing")
    with pytest.raises(REFUSED, match="larger than the .* bytes declared"):
        unpack(layout.root, tmp_path / "rootfs")


def test_manifest_and_config_digests_are_checked(layout: Layout, tmp_path: Path) -> None:
    image = layout.add_image([[("a", "file")]])
    config = layout.path_of(image["config"]["digest"])
    config.write_bytes(config.read_bytes().replace(b"65532:65532", b"00000:00000"))
    with pytest.raises(REFUSED, match=r"config sha256:.*content digest is"):
        unpack(layout.root, tmp_path / "rootfs")
    manifest = layout.path_of(image["manifest"]["digest"])
    manifest.write_bytes(manifest.read_bytes().replace(b'"schemaVersion": 2', b'"schemaVersion": 3'))
    with pytest.raises(REFUSED, match=r"manifest sha256:.*content digest is"):
        unpack(layout.root, tmp_path / "rootfs")


def test_diff_id_mismatch(layout: Layout, tmp_path: Path) -> None:
    layout.add_image([[("a", "file")]], diff_ids=["sha256:" + "0" * 64])
    with pytest.raises(REFUSED, match="uncompressed sha256:0{64}: content digest is"):
        unpack(layout.root, tmp_path / "rootfs")


def test_uncompressed_layers(layout: Layout, tmp_path: Path) -> None:
    layout.add_image([[("a", "file", {"data": b"plain tar"})]], compression="none")
    unpack(layout.root, tmp_path / "rootfs")
    assert (tmp_path / "rootfs/a").read_bytes() == b"plain tar"


def test_zstd_layers(layout: Layout, tmp_path: Path) -> None:
    layout.add_image([[("a", "file", {"data": b"lower" * 1000}), ("b", "file", {"data": b"b"})],
                      [("a", "file", {"data": b"upper"}), (".wh.b", "file")]], compression="zstd")
    unpack(layout.root, tmp_path / "rootfs")
    assert (tmp_path / "rootfs/a").read_bytes() == b"upper"
    assert not (tmp_path / "rootfs/b").exists()


@pytest.mark.parametrize("offset", [-1, 8])  # in the last frame's data, and in the first frame's header
def test_a_tampered_zstd_layer_is_refused(layout: Layout, tmp_path: Path, offset: int) -> None:
    image = layout.add_image([[("a", "file", {"data": b"zstd" * 5000})]], compression="zstd")
    path = layout.path_of(image["layers"][0]["digest"])
    blob = bytearray(path.read_bytes())
    blob[offset] ^= 0xFF  # same size: the decompressor or the digest must tell
    path.write_bytes(bytes(blob))
    with pytest.raises(REFUSED, match=f"layer {image['layers'][0]['digest']}"):
        unpack(layout.root, tmp_path / "rootfs")
    assert not (tmp_path / "rootfs").exists()


def test_selecting_the_manifest_by_ref(layout: Layout, tmp_path: Path) -> None:
    layout.add_image([[("v", "file", {"data": b"1"})]], ref="1.0.0")
    second = layout.add_image([[("v", "file", {"data": b"2"})]], ref="2.0.0")
    result = unpack(layout.root, tmp_path / "two", ref="2.0.0")
    assert (tmp_path / "two/v").read_bytes() == b"2"
    assert result.manifest_digest == second["manifest"]["digest"]
    with pytest.raises(REFUSED, match="2 manifests; name one with a ref"):
        unpack(layout.root, tmp_path / "any")
    with pytest.raises(REFUSED, match=r"no manifest tagged '3.0.0' \(tags: 1.0.0, 2.0.0\)"):
        unpack(layout.root, tmp_path / "three", ref="3.0.0")


def test_layout_errors(layout: Layout, tmp_path: Path) -> None:
    with pytest.raises(REFUSED, match="not an OCI image layout: .*index.json is missing"):
        unpack(layout.root, tmp_path / "rootfs")
    image = layout.add_image([[("a", "file")]], ref=None)
    layout.path_of(image["layers"][0]["digest"]).unlink()
    with pytest.raises(REFUSED, match="is missing from"):
        unpack(layout.root, tmp_path / "rootfs")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(REFUSED, match="must be a new or empty directory"):
        unpack(layout.root, tmp_path / "full")
    assert (tmp_path / "full" / "x").exists()


def test_unsupported_layer_media_type(layout: Layout, tmp_path: Path) -> None:
    image = layout.add_image([[("a", "file")]])
    manifest_path = layout.path_of(image["manifest"]["digest"])
    manifest = json.loads(manifest_path.read_bytes())
    manifest["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+lz4"
    data = json.dumps(manifest).encode()
    layout.manifests[0] = dict(layout.manifests[0], digest=layout.blob(data), size=len(data))
    (layout.root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": layout.manifests}))
    with pytest.raises(REFUSED, match=r"unsupported media type .*lz4.* \(plain, gzip or zstd tar only\)"):
        unpack(layout.root, tmp_path / "rootfs")


def test_invalid_digests_never_become_paths(layout: Layout, tmp_path: Path) -> None:
    (layout.root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:../../../etc/passwd",
        "size": 10}]}))
    with pytest.raises(REFUSED, match="invalid digest"):
        unpack(layout.root, tmp_path / "rootfs")
