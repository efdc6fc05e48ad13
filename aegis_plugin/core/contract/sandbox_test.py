from __future__ import annotations

from pathlib import Path

import pytest

from aegis_plugin.core.contract.sandbox import SandboxError, _to_inside, network_interfaces, resolve_user


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532::/home/nonroot:/sbin/nologin\n"
    )
    (tmp_path / "etc/group").write_text("root:x:0:\nnonroot:x:65532:\nstaff:x:50:\n")
    return tmp_path


@pytest.mark.parametrize(
    "user, ids",
    [("", (0, 0)), ("65532:65532", (65532, 65532)), ("65532", (65532, 65532)), ("1234", (1234, 0)),
     ("nonroot", (65532, 65532)), ("nonroot:staff", (65532, 50)), ("nonroot:7", (65532, 7)), ("root", (0, 0))],
)
def test_resolve_user(rootfs: Path, user: str, ids: tuple) -> None:
    assert resolve_user(user, rootfs) == ids


def test_resolve_user_unknown_names(rootfs: Path, tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="'nobody' is not in the image's /etc/passwd"):
        resolve_user("nobody", rootfs)
    with pytest.raises(SandboxError, match="'wheel' is not in the image's /etc/group"):
        resolve_user("nonroot:wheel", rootfs)
    assert resolve_user("42", tmp_path / "no-rootfs") == (42, 0)


def test_id_map_translation() -> None:
    id_map = [(65532, 0, 1)]  # what bwrap writes when root runs it: sandbox 65532 is host root
    assert _to_inside(0, id_map) == 65532
    assert _to_inside(1000, id_map) is None
    assert _to_inside(1005, [(0, 1000, 10)]) == 5


def test_network_interfaces_lists_loopback() -> None:
    assert "lo" in network_interfaces()
