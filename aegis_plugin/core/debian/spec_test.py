from __future__ import annotations

import pytest

from aegis_plugin.core.debian.errors import DebianError
from aegis_plugin.core.debian.spec import parse_spec


def test_parse() -> None:
    spec = parse_spec(
        "# comment\nlibc6\nzlib1g   # why\n\n!ignore debconf awk  # maintainer scripts\nlibstdc++6\n"
    )
    assert spec.packages == ("libc6", "libstdc++6", "zlib1g")
    assert spec.ignored == ("awk", "debconf")


@pytest.mark.parametrize(
    "text, message",
    [
        ("libc6\nlibc6\n", "listed twice"),
        ("libc6 zlib1g\n", "expected one package name"),
        ("Libc6\n", "not a Debian package name"),
        ("libc6\n!ignore libc6\n", "listed and ignored"),
        ("# nothing\n", "lists no packages"),
    ],
)
def test_errors(text: str, message: str) -> None:
    with pytest.raises(DebianError, match=message):
        parse_spec(text, where="x.packages")
