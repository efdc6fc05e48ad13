"""Crafted and generated layers that try to reach outside the rootfs: nothing next to it may change.

Each case unpacks into `<tmp>/rootfs` beside a sentinel tree `<tmp>/host` (files, dirs and a symlink with set
modes, contents, mtimes and, as root, owners) and checks every sentinel entry afterwards, whether the unpack
succeeded or refused with an UnpackError. The ctime is compared too, so even a chmod or chown to the same
value, or a new hardlink, is caught.
"""
from __future__ import annotations

import os
import random
import stat
from pathlib import Path
from typing import Any, Optional

import pytest

from aegis_plugin.core.contract.unpack import UnpackError, unpack
from aegis_plugin.core.contract.unpack_test import Layout

AS_ROOT = os.geteuid() == 0
HOST_UID = HOST_GID = 4321  # sentinel owner; layer members are owned by 0 or 65532
SECRET = b"host secret"
HOST = "{host}"  # replaced by the sentinel tree's absolute path in member names and link targets

# (path under host, kind, mode, content or link target); parents come before children
SENTINEL = [
    ("dir700", "dir", 0o700, None),
    ("dir700/secret.txt", "file", 0o600, SECRET),
    ("dir700/sub", "dir", 0o700, None),
    ("dir700/sub/deep.txt", "file", 0o640, b"deep"),
    ("file644", "file", 0o644, b"host file"),
    ("ro", "dir", 0o555, None),
    ("ro/f", "file", 0o444, b"read-only"),
    ("link", "symlink", 0o777, "dir700"),
]


def make_sentinel(host: Path) -> None:
    host.mkdir(mode=0o755)
    for rel, kind, _mode, content in SENTINEL:
        path = host / rel
        if kind == "dir":
            path.mkdir()
        elif kind == "file":
            path.write_bytes(content)
        else:
            path.symlink_to(content)
    for i, (rel, kind, mode, _content) in enumerate(reversed([("", "dir", 0o755, None), *SENTINEL])):
        path = host / rel
        if AS_ROOT:
            os.chown(path, HOST_UID, HOST_GID, follow_symlinks=False)
        if kind != "symlink":
            os.chmod(path, mode)
        os.utime(path, ns=(1_500_000_000_000_000_000 + i, 1_600_000_000_000_000_007 + i), follow_symlinks=False)


def snapshot(host: Path) -> dict[str, tuple]:
    """Everything about every entry under (and including) host, read without following symlinks."""
    result = {}
    for directory, dirs, files in os.walk(host):
        for path in [Path(directory)] + [Path(directory) / n for n in dirs + files]:
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                content: Any = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                content = path.read_bytes()
            else:
                content = sorted(os.listdir(path))
            result[str(path.relative_to(host))] = (
                stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns,
                st.st_ctime_ns, st.st_nlink, st.st_ino, content,
            )
    return result


def substitute(layers: list[list[tuple]], host: Path) -> list[list[tuple]]:
    def fill(value: Any) -> Any:
        return value.replace(HOST, str(host)) if isinstance(value, str) else value

    result = []
    for members in layers:
        layer = []
        for name, kind, *rest in members:
            extra = {k: fill(v) for k, v in (rest[0] if rest else {}).items()}
            layer.append((fill(name), kind, extra))
        result.append(layer)
    return result


def check_case(tmp: Path, layers: list[list[tuple]]) -> Optional[str]:
    """Unpack `layers` beside a fresh sentinel tree and check it; returns the refusal message, if any."""
    tmp.mkdir()
    host = tmp / "host"
    make_sentinel(host)
    before = snapshot(host)
    host_inodes = {(host.stat().st_dev, entry[7]) for entry in before.values()}
    layers = substitute(layers, host)
    layout = Layout(tmp / "layout")
    layout.add_image(layers)
    rootfs = tmp / "rootfs"
    refusal = None
    try:
        unpack(layout.root, rootfs)
    except UnpackError as e:
        refusal = str(e)

    assert snapshot(host) == before, "the sentinel tree next to the rootfs changed"
    if refusal is None:
        assert sorted(os.listdir(tmp)) == ["host", "layout", "rootfs"]
        for directory, dirs, files in os.walk(rootfs):
            for name in dirs + files:
                st = os.lstat(os.path.join(directory, name))
                assert (st.st_dev, st.st_ino) not in host_inodes, f"{name} is a host inode"
                if stat.S_ISREG(st.st_mode):
                    assert Path(directory, name).read_bytes() != SECRET, f"{name} has the host's content"
    else:
        assert sorted(os.listdir(tmp)) == ["host", "layout"], "a refused unpack leaves nothing behind"
        assert "\n" not in refusal
        names = {name.rstrip("/") for members in layers for name, *_ in members}
        assert any(repr(name) in refusal for name in names), f"the refusal names no member: {refusal}"
    return refusal


def dir_(name: str, mode: int = 0o777, uid: int = 0) -> tuple:
    return (name, "dir", {"mode": mode, "uid": uid})


def file(name: str, data: bytes = b"from the layer", mode: int = 0o777) -> tuple:
    return (name, "file", {"data": data, "mode": mode})


def symlink(name: str, target: str) -> tuple:
    return (name, "symlink", {"target": target})


def hardlink(name: str, target: str) -> tuple:
    return (name, "hardlink", {"target": target})


# --- crafted cases -----------------------------------------------------------------------------------

# Refusals: an entry below a symlink or file of its own layer; a hardlink to no earlier file of its layer.
NOT_A_DIR = "is not a directory in its own layer"
NO_TARGET = "the target is not an existing file of its layer"

# (id, layers, "ok" or a fragment of the refusal). A lower layer's symlink never redirects an upper layer's
# entries or whiteouts: they are paths ("ok" below, and the host stays untouched).
CRAFTED = [
    # The finding: the final permission pass chmod-ed the symlink's target (a 0700 host dir became 0777).
    ("finding-dir-then-symlink", [[dir_("d"), symlink("d", f"{HOST}/dir700")]], "ok"),
    ("dir-then-relative-symlink", [[dir_("d"), symlink("d", "../host/dir700")]], "ok"),
    ("dir-then-symlink-next-layer", [[dir_("d")], [dir_("d"), symlink("d", f"{HOST}/dir700")]], "ok"),
    ("nested-dir-then-parent-symlink", [[dir_("d"), dir_("d/sub", 0o700), symlink("d", f"{HOST}/dir700")]], "ok"),
    ("nested-dir-then-parent-symlink-up", [[dir_("d"), dir_("d/sub"), symlink("d", "../host/dir700")]], "ok"),
    ("dir-then-symlink-to-file", [[dir_("d", 0o7777), symlink("d", f"{HOST}/file644")]], "ok"),
    ("dir-then-hardlink-to-symlink", [[symlink("s", f"{HOST}/dir700"), dir_("d"), hardlink("d", "s")]], "ok"),
    ("symlink-then-dir", [[symlink("d", f"{HOST}/dir700"), dir_("d")]], "ok"),
    ("symlink-then-dir-next-layer", [[symlink("d", f"{HOST}/dir700")], [dir_("d", uid=65532)]], "ok"),
    ("symlink-then-file", [[symlink("f", f"{HOST}/file644"), file("f")]], "ok"),
    ("symlink-then-fifo", [[symlink("f", f"{HOST}/file644"), ("f", "fifo")]], "ok"),
    ("symlink-then-hardlink", [[file("a"), symlink("f", f"{HOST}/file644"), hardlink("f", "a")]], "ok"),
    ("hardlink-to-outside-symlink", [[symlink("s", f"{HOST}/file644"), hardlink("h", "s"), file("h")]], "ok"),
    ("file-through-absolute-symlink", [[symlink("d", f"{HOST}/dir700"), file("d/secret.txt")]], NOT_A_DIR),
    ("file-through-relative-symlink", [[symlink("d", "../host/dir700"), file("d/new")]], NOT_A_DIR),
    ("dir-through-symlink", [[symlink("d", f"{HOST}/dir700")], [dir_("d/sub")]], "ok"),
    ("dir-through-symlink-chain", [[symlink("a", "b"), symlink("b", "c/../../host"), dir_("a/dir700")]],
     NOT_A_DIR),
    ("file-through-root-symlink", [[symlink("r", "/"), file(f"r{HOST}/file644")]], NOT_A_DIR),
    ("dotdot-name", [[file("../host/evil")]], "contains '..'"),
    ("dotdot-dir", [[dir_("../host/dir700")]], "contains '..'"),
    ("nested-dotdot-name", [[dir_("d"), file("d/../../host/file644")]], "contains '..'"),
    ("hardlink-dotdot", [[hardlink("h", "../host/file644")]], "contains '..'"),
    ("hardlink-absolute", [[hardlink("h", f"{HOST}/file644")]], "not an existing file"),
    ("hardlink-through-symlink", [[symlink("d", f"{HOST}/dir700"), hardlink("h", "d/secret.txt")]], NO_TARGET),
    ("hardlink-through-relative-symlink", [[symlink("d", "../host"), hardlink("h", "d/file644")]], NO_TARGET),
    ("hardlink-then-file", [[symlink("d", "../host/file644"), hardlink("h", "d"), file("h")]], "ok"),
    ("hardlink-then-dir", [[file("a"), hardlink("d", "a"), dir_("d")]], "ok"),
    ("hardlink-then-symlink", [[file("a"), hardlink("d", "a"), symlink("d", f"{HOST}/dir700"), dir_("e")]], "ok"),
    ("hardlink-to-itself", [[file("h"), hardlink("h", "h")]], "links to itself"),
    ("whiteout-through-symlink", [[symlink("d", f"{HOST}/dir700")], [file("d/.wh.secret.txt")]], "ok"),
    ("opaque-through-symlink", [[symlink("d", f"{HOST}/dir700")], [file("d/.wh..wh..opq")]], "ok"),
    ("opaque-through-relative", [[symlink("d", "../host/dir700")], [file("d/.wh..wh..opq")]], "ok"),
    ("whiteout-of-parent-symlink", [[symlink("d", f"{HOST}/dir700")], [file(".wh.d"), dir_("d")]], "ok"),
    ("whiteout-dotdot", [[file("d/.wh...")]], "invalid whiteout"),
    ("whiteout-dotdot-name", [[file("../host/.wh.file644")]], "contains '..'"),
]


@pytest.mark.parametrize("layers, expected", [c[1:] for c in CRAFTED], ids=[c[0] for c in CRAFTED])
def test_crafted_layers_leave_the_host_alone(tmp_path: Path, layers: list, expected: str) -> None:
    refusal = check_case(tmp_path / "case", layers)
    if expected == "ok":
        assert refusal is None
    else:
        assert refusal is not None and expected in refusal


def test_the_finding_keeps_the_outside_directory_0700(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o700)
    os.chmod(outside, 0o700)
    layout = Layout(tmp_path / "layout")
    layout.add_image([[dir_("d", 0o777), symlink("d", str(outside))]])
    unpack(layout.root, tmp_path / "rootfs")
    assert stat.S_IMODE(outside.stat().st_mode) == 0o700
    assert os.readlink(tmp_path / "rootfs/d") == str(outside)


def test_later_dir_entry_sets_the_mode_of_the_directory_it_names(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "layout")
    layout.add_image([[dir_("d", 0o750), dir_("e", 0o711), symlink("e", "d"), dir_("d/sub", 0o700)]])
    rootfs = tmp_path / "rootfs"
    unpack(layout.root, rootfs)
    assert stat.S_IMODE((rootfs / "d").stat().st_mode) == 0o750
    assert stat.S_IMODE((rootfs / "d/sub").stat().st_mode) == 0o700
    assert os.readlink(rootfs / "e") == "d"


# --- generated cases ---------------------------------------------------------------------------------

NAMES = ["d", "d/x", "d/sub", "d/sub/y", "e", "e/f", "d/secret.txt", "l", "l/x", "l/secret.txt", "d/sub/deep.txt"]
DOTDOT_NAMES = ["../host/evil", "d/../../host/dir700", "../host/dir700/secret.txt", "./../host", "l/../../x"]
SYMLINK_TARGETS = [
    f"{HOST}/dir700", f"{HOST}/file644", HOST, f"{HOST}/link", f"{HOST}/dir700/secret.txt", "/", "/etc",
    "../host/dir700", "../host", "../../host/dir700", "..", "../..", ".", "d", "e", "d/sub", "x/../..", "l", "sub",
    "d/../../host",
]
HARDLINK_TARGETS = ["d/x", "e/f", "d/x", "e/f", "d/secret.txt", "l/secret.txt", "l", "d", "../host/file644",
                    f"{HOST}/file644", "d/sub/deep.txt", "l/sub/deep.txt"]
KINDS = ["dir", "file", "symlink", "hardlink", "fifo", "whiteout", "opaque", "dotdot"]
# Each generated image starts with this layer, so that later members have something to replace and link to.
BASE = [dir_("d", 0o755), file("d/x"), dir_("d/sub", 0o755), file("d/sub/deep.txt"), dir_("e", 0o755), file("e/f")]


def random_member(rng: random.Random) -> tuple:
    kind = rng.choices(KINDS, weights=[3, 2, 4, 2, 1, 1, 1, 0.3])[0]
    name = rng.choice(NAMES)
    if kind == "dir":
        return dir_(name, rng.choice([0o777, 0o700, 0o7777, 0o000]), rng.choice([0, 65532]))
    if kind == "file":
        return file(name, mode=rng.choice([0o777, 0o600, 0o4755]))
    if kind == "symlink":
        return symlink(name, rng.choice(SYMLINK_TARGETS))
    if kind == "hardlink":
        return hardlink(name, rng.choice(HARDLINK_TARGETS))
    if kind == "fifo":
        return (name, "fifo")
    if kind == "whiteout":
        parent, _, base = name.rpartition("/")
        return file(f"{parent}/.wh.{base}" if parent else f".wh.{base}")
    if kind == "opaque":
        return file(f"{rng.choice(['d', 'e', 'l', 'd/sub'])}/.wh..wh..opq")
    return rng.choice([file, dir_])(rng.choice(DOTDOT_NAMES))


def random_cases(count: int, seed: int) -> list[list[list[tuple]]]:
    rng = random.Random(seed)
    return [[BASE] + [[random_member(rng) for _ in range(rng.randint(1, 5))] for _ in range(rng.randint(1, 3))]
            for _ in range(count)]


def test_generated_layers_leave_the_host_alone(tmp_path: Path) -> None:
    outcomes = {"ok": 0, "refused": 0}
    for i, layers in enumerate(random_cases(300, seed=20240613)):
        try:
            refusal = check_case(tmp_path / f"case{i}", layers)
        except AssertionError as e:
            raise AssertionError(f"case {i} {layers!r}: {e}") from None
        outcomes["ok" if refusal is None else "refused"] += 1
    # Both paths are exercised, so the sentinel checks cover successful unpacks as well as refusals.
    assert outcomes["ok"] >= 50 and outcomes["refused"] >= 50, outcomes
