import pytest

from aegis_plugin.core.guards import versions


def test_pep440_order() -> None:
    parse = versions.parser("PyPI")
    assert parse("1.0rc1") < parse("1.0") < parse("1.0.post1") < parse("1.1.dev0") < parse("1.1")
    assert parse("2.31.0") == parse("2.31")
    with pytest.raises(versions.UnknownVersion, match="not a PEP 440 version"):
        parse("not a version!")


def test_dpkg_order() -> None:
    parse = versions.parser("Debian:12")
    assert parse("3.0.11-1~deb12u2") < parse("3.0.11-1") < parse("3.0.11-1+deb12u1") < parse("3.0.22-1~deb12u2")
    assert parse("1:1.0-1") > parse("9.9-1")  # the epoch wins
    assert parse("1.0~rc1-1") < parse("1.0-1")


def test_ecosystems() -> None:
    assert versions.ecosystem_matches("Debian", "Debian:12")
    assert versions.ecosystem_matches("Debian:12", "Debian:12")
    assert not versions.ecosystem_matches("Debian:11", "Debian:12")
    with pytest.raises(versions.UnknownVersion, match="no version order for ecosystem 'npm'"):
        versions.parser("npm")
