import pytest

from aegis_plugin.core import versions


@pytest.mark.parametrize("v", ["0.0.0", "1.2.3", "10.20.30", "1.0.0-alpha.1", "1.0.0+build.7", "2.1.0-rc.1+sha.5"])
def test_semver_accepts(v: str) -> None:
    assert versions.is_semver(v)


@pytest.mark.parametrize("v", ["1", "1.2", "01.2.3", "1.2.3-", "v1.2.3", "latest", "1.2.3.4", "1.0.0-01"])
def test_semver_rejects(v: str) -> None:
    assert not versions.is_semver(v)


def test_model_id() -> None:
    assert versions.is_model_id("fraud-detector")
    assert not versions.is_model_id("Fraud Detector")


def test_accelerator() -> None:
    assert versions.is_accelerator("cpu")
    assert versions.is_accelerator("cuda-12.4")
    assert not versions.is_accelerator("cuda")
    assert not versions.is_accelerator("gpu")


def test_repository() -> None:
    assert versions.check_repository("registry.example.com:5000/models/fraud") is None
    assert versions.check_repository("models/fraud") is None
    assert "never `latest`" in versions.check_repository("models/fraud:latest")
    assert "carries a tag" in versions.check_repository("models/fraud:1.0.0")
    assert "carries a digest" in versions.check_repository("models/fraud@sha256:" + "a" * 64)
    assert "not a valid repository" in versions.check_repository("Models/Fraud")


def test_pinned_reference() -> None:
    assert versions.check_pinned_reference("debian@sha256:" + "0" * 64) is None
    assert "by tag 'latest'" in versions.check_pinned_reference("debian")
    assert "by tag '12-slim'" in versions.check_pinned_reference("registry:5000/debian:12-slim")
    assert "registry:5000/debian@sha256" in versions.check_pinned_reference("registry:5000/debian:12-slim")
    assert "malformed digest" in versions.check_pinned_reference("debian@sha256:abc")


def test_tag() -> None:
    assert versions.check_tag("1.2.3") is None
    assert "floats" in versions.check_tag("Latest")
    assert "not a valid" in versions.check_tag("-bad")
