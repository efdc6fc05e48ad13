from __future__ import annotations

import pytest

from aegis_plugin.core.debian.version import compare_versions, satisfies


@pytest.mark.parametrize(
    "older, newer",
    [
        ("1.0~rc1", "1.0"),  # ~ sorts before the end of the string
        ("1.0", "1.0-1"),
        ("1.0-1", "1.0a-1"),
        ("1.0a", "1.0+"),  # letters before other symbols
        ("1.9", "1.10"),  # digits compare as numbers
        ("9.9", "1:0.1"),  # the epoch dominates
        ("3.11.2-6+deb12u8", "3.11.2-6+deb12u9"),
        ("2.36-9+deb12u9", "2.36-9+deb12u10"),
        ("20230311", "20250419~deb12u2"),
        ("3.0.15-1~deb12u1", "3.0.15-1"),
    ],
)
def test_order(older: str, newer: str) -> None:
    assert compare_versions(older, newer) == -1
    assert compare_versions(newer, older) == 1


def test_equal() -> None:
    assert compare_versions("1:1.2.13.dfsg-1", "1:1.2.13.dfsg-1") == 0
    assert compare_versions("0:1.0", "1.0") == 0
    assert compare_versions("1.0", "1.00") == 0


def test_satisfies() -> None:
    assert satisfies("2.36-9", ">=", "2.34")
    assert not satisfies("2.33", ">=", "2.34")
    assert satisfies("1.0", "=", "1.0")
    assert satisfies("1.0", "<<", "1.1")
    assert not satisfies("1.1", "<<", "1.1")
    assert satisfies("1.2", ">>", "1.1")
    assert satisfies("1.1", "<=", "1.1")
    with pytest.raises(ValueError):
        satisfies("1", "~=", "1")
