from __future__ import annotations

import gzip
import hashlib
import io
import os
import random
import struct
import tarfile
from pathlib import Path
from typing import List

import pytest

from aegis_plugin.core.oci.compression import ZstdUnavailableError, open_layer_tar
from aegis_plugin.core.oci.layer import LayerEntry, write_layer, write_tar

MTIME = 1_700_000_000


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def members(layer_path: Path) -> List[tarfile.TarInfo]:
    with tarfile.open(layer_path, "r:gz") as tar:
        return tar.getmembers()


def sample_entries(src_dir: Path) -> List[LayerEntry]:
    weights = src_dir / "weights.safetensors"
    weights.write_bytes(b"\x00weights\xff" * 1000)
    return [
        LayerEntry("/app/model/weights.safetensors", "file", 0o644, source=str(weights)),
        LayerEntry("/app/bin/run", "file", 0o4755, data=b"#!/bin/sh\n"),
        LayerEntry("/app/data", "dir", 0o700),
        LayerEntry("/app/latest", "symlink", 0o777, linkname="model/weights.safetensors"),
        LayerEntry("/app/weights-link", "hardlink", 0o600, linkname="/app/model/weights.safetensors"),
        LayerEntry("/etc/motd", "file", 0o644, data="héllo\n".encode()),
    ]


def test_same_entries_in_any_order_give_identical_bytes(tmp_path: Path) -> None:
    entries = sample_entries(tmp_path)
    first = write_layer(entries, tmp_path / "a.tar.gz", MTIME)
    shuffled = list(entries)
    random.Random(4).shuffle(shuffled)
    assert shuffled != entries
    second = write_layer(reversed(shuffled), tmp_path / "b.tar.gz", MTIME)

    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()
    assert first == second


def test_on_disk_metadata_and_location_are_ignored(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    (one / "w.bin").write_bytes(b"model" * 5000)
    (two / "other-name.bin").write_bytes(b"model" * 5000)
    os.chmod(one / "w.bin", 0o600)
    os.chmod(two / "other-name.bin", 0o755)
    os.utime(one / "w.bin", (1, 1))
    os.utime(two / "other-name.bin", (2_000_000_000, 2_000_000_000))
    if os.geteuid() == 0:
        os.chown(two / "other-name.bin", 1234, 5678)

    a = write_layer([LayerEntry("/m/w.bin", "file", 0o644, source=str(one / "w.bin"))], tmp_path / "a", MTIME)
    b = write_layer(
        [LayerEntry("/m/w.bin", "file", 0o644, source=str(two / "other-name.bin"))], tmp_path / "b", MTIME
    )
    c = write_layer([LayerEntry("/m/w.bin", "file", 0o644, data=b"model" * 5000)], tmp_path / "c", MTIME)

    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes() == (tmp_path / "c").read_bytes()
    assert a == b == c


def test_mtime_argument_changes_output(tmp_path: Path) -> None:
    entries = [LayerEntry("/x", "file", 0o644, data=b"x")]
    a = write_layer(entries, tmp_path / "a", MTIME)
    b = write_layer(entries, tmp_path / "b", MTIME + 1)
    assert a.diff_id != b.diff_id


def test_missing_parent_directories_are_added(tmp_path: Path) -> None:
    write_layer(
        [
            LayerEntry("/app/model/x", "file", 0o644, data=b"x"),
            LayerEntry("/app", "dir", 0o750),
        ],
        tmp_path / "l.tar.gz",
        MTIME,
    )
    got = [(m.name, m.isdir(), m.mode) for m in members(tmp_path / "l.tar.gz")]
    assert got == [
        ("app", True, 0o750),  # explicit directory keeps its own mode
        ("app/model", True, 0o755),  # added parent
        ("app/model/x", False, 0o644),
    ]


def test_member_order_and_metadata(tmp_path: Path) -> None:
    write_layer(sample_entries(tmp_path), tmp_path / "l.tar.gz", MTIME)
    ms = members(tmp_path / "l.tar.gz")

    names = [m.name for m in ms]
    assert names == [
        "app",
        "app/bin",
        "app/bin/run",
        "app/data",
        "app/latest",
        "app/model",
        "app/model/weights.safetensors",
        "etc",
        "etc/motd",
        "app/weights-link",  # hardlinks come after their targets
    ]
    for m in ms:
        assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", MTIME), m.name
        assert not m.name.startswith("/")

    by_name = {m.name: m for m in ms}
    assert by_name["app/bin/run"].mode == 0o4755
    assert by_name["app/data"].isdir() and by_name["app/data"].mode == 0o700
    assert by_name["app/latest"].issym()
    assert by_name["app/latest"].linkname == "model/weights.safetensors"
    link = by_name["app/weights-link"]
    assert link.islnk() and link.linkname == "app/model/weights.safetensors"
    assert link.mode == 0o644  # the target's mode, not the one declared on the link
    assert by_name["etc/motd"].size == len("héllo\n".encode())


def test_pax_headers_carry_nothing_machine_dependent(tmp_path: Path) -> None:
    long_path = "/" + "/".join(["d" * 40] * 4) + "/file"
    entries = [
        LayerEntry(long_path, "file", 0o644, data=b"x"),
        LayerEntry("/ünïcode", "file", 0o644, data=b"y"),
    ]
    write_layer(entries, tmp_path / "l.tar.gz", MTIME)
    raw = gzip.decompress((tmp_path / "l.tar.gz").read_bytes())
    for key in (b"atime=", b"ctime=", b"mtime=", b"uid=", b"uname=", b"SCHILY"):
        assert key not in raw
    by_name = {m.name: m for m in members(tmp_path / "l.tar.gz")}
    assert by_name[long_path[1:]].pax_headers == {"path": long_path[1:]}
    assert by_name["ünïcode"].pax_headers == {"path": "ünïcode"}


def test_digest_diff_id_and_size_match_the_written_blob(tmp_path: Path) -> None:
    out = tmp_path / "l.tar.gz"
    info = write_layer(sample_entries(tmp_path), out, MTIME)
    blob = out.read_bytes()
    assert info.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert info.diff_id == "sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest()
    assert info.size == len(blob) == os.path.getsize(out)
    assert info.digest != info.diff_id


def test_gzip_header_is_fixed(tmp_path: Path) -> None:
    out = tmp_path / "named-output.tar.gz"
    write_layer([LayerEntry("/x", "file", 0o644, data=b"x")], out, MTIME)
    header = out.read_bytes()[:10]
    magic, method, flags, mtime = struct.unpack("<2sBBI", header[:8])
    assert magic == b"\x1f\x8b" and method == 8
    assert flags == 0  # in particular no FNAME: the output filename is not embedded
    assert mtime == 0


def test_tar_stream_matches_write_tar(tmp_path: Path) -> None:
    entries = sample_entries(tmp_path)
    out = tmp_path / "l.tar.gz"
    info = write_layer(entries, out, MTIME)
    buf = io.BytesIO()
    write_tar(entries, buf, MTIME)
    assert gzip.decompress(out.read_bytes()) == buf.getvalue()
    assert len(buf.getvalue()) % 10240 == 0  # padded to whole tar records
    assert info.diff_id == "sha256:" + hashlib.sha256(buf.getvalue()).hexdigest()


def test_large_file_is_streamed_correctly(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    block = os.urandom(1 << 20)
    with open(big, "wb") as f:
        for i in range(20):
            f.write(bytes([i]) + block[1:])
    out = tmp_path / "l.tar.gz"
    info = write_layer([LayerEntry("/models/big.bin", "file", 0o644, source=str(big))], out, MTIME)

    assert info.digest == sha256_file(out)
    with tarfile.open(out, "r:gz") as tar:
        member = tar.getmember("models/big.bin")
        assert member.size == 20 << 20
        extracted = tar.extractfile(member)
        assert extracted is not None
        h = hashlib.sha256()
        for chunk in iter(lambda: extracted.read(1 << 20), b""):
            h.update(chunk)
    assert "sha256:" + h.hexdigest() == sha256_file(big)


def test_empty_layer_is_a_valid_tar(tmp_path: Path) -> None:
    info = write_layer([], tmp_path / "l.tar.gz", MTIME)
    raw = gzip.decompress((tmp_path / "l.tar.gz").read_bytes())
    assert raw == b"\0" * 10240
    assert info.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()


def test_duplicate_path_raises_before_writing(tmp_path: Path) -> None:
    out = tmp_path / "l.tar.gz"
    with pytest.raises(ValueError, match="/app/x"):
        write_layer(
            [
                LayerEntry("/app/x", "file", 0o644, data=b"1"),
                LayerEntry("/app/x", "file", 0o644, data=b"2"),
            ],
            out,
            MTIME,
        )
    assert not out.exists()


@pytest.mark.parametrize(
    "entries, message",
    [
        ([LayerEntry("/a", "file", 0o644, data=b""), LayerEntry("/a/b", "file", 0o644, data=b"")], "/a is a file"),
        ([LayerEntry("/l", "hardlink", 0o644, linkname="/missing")], "hardlink /l"),
        ([LayerEntry("/d", "dir", 0o755), LayerEntry("/l", "hardlink", 0o644, linkname="/d")], "hardlink /l"),
    ],
)
def test_inconsistent_entries_raise(tmp_path: Path, entries: List[LayerEntry], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_layer(entries, tmp_path / "l.tar.gz", MTIME)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(path="relative/x", kind="file", mode=0o644, data=b""),
        dict(path="/a/../x", kind="file", mode=0o644, data=b""),
        dict(path="/a/", kind="dir", mode=0o755),
        dict(path="//a", kind="dir", mode=0o755),
        dict(path="/", kind="dir", mode=0o755),
        dict(path="/x", kind="fifo", mode=0o644),
        dict(path="/x", kind="file", mode=0o10644, data=b""),
        dict(path="/x", kind="file", mode=0o644),
        dict(path="/x", kind="file", mode=0o644, data=b"", source="/etc/hostname"),
        dict(path="/x", kind="dir", mode=0o755, data=b""),
        dict(path="/x", kind="symlink", mode=0o777),
        dict(path="/x", kind="hardlink", mode=0o644, linkname="relative"),
        dict(path="/x", kind="file", mode=0o644, data=b"", linkname="/y"),
        dict(path="/x", kind="file", mode=0o644, data=b"", sha256="0" * 64),  # a known sha256 is of a source
    ],
)
def test_invalid_entries_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        LayerEntry(**kwargs)


def test_invalid_mtime_is_rejected(tmp_path: Path) -> None:
    for bad in (-1, 1.5, 8**11):
        with pytest.raises(ValueError, match="mtime"):
            write_layer([], tmp_path / "l.tar.gz", bad)  # type: ignore[arg-type]


def test_source_must_be_a_regular_file_and_no_partial_output_remains(tmp_path: Path) -> None:
    out = tmp_path / "l.tar.gz"
    entries = [
        LayerEntry("/a", "file", 0o644, data=b"written first"),
        LayerEntry("/b", "file", 0o644, source="/dev/null"),
    ]
    with pytest.raises(ValueError, match="not a regular file"):
        write_layer(entries, out, MTIME)
    assert not out.exists()


def decompress(blob: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.decompress(blob)
    import zstandard

    return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob), read_across_frames=True).read()


# The start of each piece: a gzip member's header free of machine state (no mtime, OS byte 255), or a zstd
# frame's magic number and descriptor (content size present, no checksum, no dictionary).
PIECE_START = {"gzip": bytes([0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 0xFF]), "zstd": b"\x28\xb5\x2f\xfd"}


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_compressed_layers_are_fixed_size_pieces_whatever_the_threads(tmp_path, monkeypatch, compression) -> None:
    """Pieces are cut every FRAME_BYTES of tar and compressed in parallel; the blob must not depend on how many
    threads did it, and must read back as one tar with the same diff_id."""
    from aegis_plugin.core.oci import compression as compression_module

    monkeypatch.setattr(compression_module, "FRAME_BYTES", 4096)
    rng = random.Random(7)
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(rng.getrandbits(8) for _ in range(50_000)) + b"\x00" * 30_000)
    entries = [LayerEntry("/data/big.bin", "file", 0o644, source=str(big)),
               LayerEntry("/data/small.txt", "file", 0o644, data=b"hello")]
    blobs = []
    for threads in (1, 4):
        monkeypatch.setattr(os, "cpu_count", lambda: threads)
        info = write_layer(entries, tmp_path / f"{threads}.blob", MTIME, compression=compression)
        blobs.append(((tmp_path / f"{threads}.blob").read_bytes(), info))
    (one, info_one), (four, info_four) = blobs
    assert one == four and info_one == info_four
    assert info_one.media_type == f"application/vnd.oci.image.layer.v1.tar+{compression}"
    plain = io.BytesIO()
    write_tar(entries, plain, MTIME)
    tar_bytes = plain.getvalue()
    assert decompress(one, compression) == tar_bytes
    assert info_one.diff_id == "sha256:" + hashlib.sha256(tar_bytes).hexdigest()
    assert info_one.digest == "sha256:" + hashlib.sha256(one).hexdigest() and info_one.size == len(one)
    assert one.count(PIECE_START[compression]) == -(-len(tar_bytes) // 4096)
    if compression == "zstd":  # frame header descriptor: content size in 2 bytes, single segment, no checksum
        assert one[4] == 0b0110_0000
    with open_layer_tar(str(tmp_path / "1.blob")) as tar:
        assert [m.name for m in tar] == ["data", "data/big.bin", "data/small.txt"]
        assert tar.extractfile("data/small.txt").read() == b"hello"  # type: ignore[union-attr]
        assert tar.extractfile("data/big.bin").read() == big.read_bytes()  # type: ignore[union-attr]


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_an_empty_compressed_layer_is_one_empty_piece(tmp_path, compression) -> None:
    info = write_layer([], tmp_path / "empty.blob", MTIME, compression=compression)
    blob = (tmp_path / "empty.blob").read_bytes()
    plain = io.BytesIO()
    write_tar([], plain, MTIME)
    assert decompress(blob, compression) == plain.getvalue()
    assert blob.count(PIECE_START[compression][:2]) == 1 and info.size == len(blob)


def test_zstd_layers_need_zstandard_and_leave_nothing_behind(tmp_path, monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "zstandard", None)  # what an interpreter without it does on import
    with pytest.raises(ZstdUnavailableError, match="writing a zstd layer needs the 'zstandard' Python package"):
        write_layer(sample_entries(tmp_path), tmp_path / "l.blob", MTIME, compression="zstd")
    assert not (tmp_path / "l.blob").exists()


def test_file_digests_can_be_skipped_without_changing_the_blob(tmp_path) -> None:
    entries = sample_entries(tmp_path)
    with_digests = write_layer(entries, tmp_path / "a.tar.gz", MTIME)
    without = write_layer(entries, tmp_path / "b.tar.gz", MTIME, file_digests=False)
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()
    assert with_digests.files and without.files == ()
    assert (without.digest, without.diff_id, without.toc) == (with_digests.digest, with_digests.diff_id, with_digests.toc)


def test_a_known_sha256_is_recorded_as_given_and_the_blob_is_the_same(tmp_path) -> None:
    """A caller with the file's SHA-256 already (Pants' digest of the input) spares a pass over its bytes:
    recorded as given (a made-up one here, to tell them apart), SHA-1 still taken, the blob unchanged."""
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(os.urandom(3 << 20))
    given = "ab" * 32
    hashed = write_layer([LayerEntry("/app/w", "file", 0o644, source=str(weights))], tmp_path / "a.tar", MTIME,
                         compression="none")
    known = write_layer([LayerEntry("/app/w", "file", 0o644, source=str(weights), sha256=given)],
                        tmp_path / "b.tar", MTIME, compression="none")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert known.digest == hashed.digest
    assert hashed.files[0].sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert (known.files[0].sha256, known.files[0].sha1) == (given, hashed.files[0].sha1)


def test_large_layers_are_compressed_at_level_1(tmp_path, monkeypatch) -> None:
    """Level 6 for small layers, level 1 from LARGE_LAYER_BYTES of content: the level is written in each
    member's deflate stream, so the same entries always give the same blob."""
    from aegis_plugin.core.oci import layer as layer_module

    text = tmp_path / "text.txt"
    text.write_bytes(b"".join(b"line %d of a compressible file\n" % i for i in range(20_000)))
    entries = [LayerEntry("/data/text.txt", "file", 0o644, source=str(text))]
    small = write_layer(entries, tmp_path / "small.tar.gz", MTIME)
    monkeypatch.setattr(layer_module, "LARGE_LAYER_BYTES", text.stat().st_size)
    large = write_layer(entries, tmp_path / "large.tar.gz", MTIME)
    assert large.diff_id == small.diff_id and large.size > small.size
    assert gzip.decompress((tmp_path / "large.tar.gz").read_bytes()) == gzip.decompress(
        (tmp_path / "small.tar.gz").read_bytes())
