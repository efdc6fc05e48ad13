import pytest

from aegis_plugin.core import build_fields
from aegis_plugin.core.oci import image, tarball
from aegis_plugin.core.registry import reference


@pytest.mark.parametrize("v", ["0.0.0", "1.2.3", "10.20.30", "1.0.0-alpha.1", "1.0.0+build.7", "2.1.0-rc.1+sha.5"])
def test_semver_accepts(v: str) -> None:
    assert build_fields.is_semver(v)


@pytest.mark.parametrize("v", ["1", "1.2", "01.2.3", "1.2.3-", "v1.2.3", "latest", "1.2.3.4", "1.0.0-01"])
def test_semver_rejects(v: str) -> None:
    assert not build_fields.is_semver(v)


def test_model_id() -> None:
    assert build_fields.is_model_id("fraud-detector")
    assert not build_fields.is_model_id("Fraud Detector")


def test_accelerator() -> None:
    assert build_fields.is_accelerator("cpu")
    assert build_fields.is_accelerator("cuda-12.4")
    assert not build_fields.is_accelerator("cuda")
    assert not build_fields.is_accelerator("gpu")


def test_repository() -> None:
    assert build_fields.check_repository("registry.example.com:5000/models/fraud") is None
    assert build_fields.check_repository("models/fraud") is None
    assert "never `latest`" in build_fields.check_repository("models/fraud:latest")
    assert "carries a tag" in build_fields.check_repository("models/fraud:1.0.0")
    assert "carries a digest" in build_fields.check_repository("models/fraud@sha256:" + "a" * 64)
    assert "not a valid repository" in build_fields.check_repository("Models/Fraud")


def test_pinned_reference() -> None:
    assert build_fields.check_pinned_reference("debian@sha256:" + "0" * 64) is None
    assert "by tag 'latest'" in build_fields.check_pinned_reference("debian")
    assert "by tag '12-slim'" in build_fields.check_pinned_reference("registry:5000/debian:12-slim")
    assert "registry:5000/debian@sha256" in build_fields.check_pinned_reference("registry:5000/debian:12-slim")
    assert "malformed digest" in build_fields.check_pinned_reference("debian@sha256:abc")


def test_tag() -> None:
    assert build_fields.check_tag("1.2.3") is None
    assert "floats" in build_fields.check_tag("Latest")
    assert "not a valid" in build_fields.check_tag("-bad")


def test_version() -> None:
    assert build_fields.check_version("2.0.0-rc.1") is None
    assert build_fields.check_version("1.0.0+build.7") == (
        "'1.0.0+build.7' has build metadata (`+build.7`), which an image tag cannot carry: write '1.0.0' "
        "(the image records its git revision already)"
    )
    assert build_fields.check_version("1.0.0\n") == "'1.0.0\\n' is not a semantic version (MAJOR.MINOR.PATCH, e.g. `1.0.0`)"


def test_model_id_is_one_repository_component() -> None:
    assert build_fields.is_model_id("fraud__v2.x--y")
    for bad in ("fraud..x-", "-fraud", "fraud_", "a-_b", "a___b", "fraud\n", "a" * 129):
        assert not build_fields.is_model_id(bad), bad


def test_repository_components_and_length() -> None:
    assert build_fields.check_repository("localhost/fraud") is None
    assert build_fields.check_repository("Registry/fraud") is None  # capitals: a host, as docker reads it
    assert "'x..y' must be lowercase" in build_fields.check_repository("ml/x..y")
    assert "'fraud-' must be lowercase" in build_fields.check_repository("fraud-")
    assert "is not a `host[:port]`" in build_fields.check_repository("reg_istry.example.com/fraud")
    assert build_fields.check_repository("r.example/" + "a" * 245) is None
    assert "256 characters long, at most 255" in build_fields.check_repository("r.example/" + "a" * 246)
    # A name without host is counted as `docker load` reads it: `docker.io/library/<name>`.
    assert build_fields.check_repository("a" * 237) is None
    assert "256 characters long (with the `docker.io/library/`" in build_fields.check_repository("a" * 238)


# What the checks accept, the image step (image.tar's names, the layout's ref name) and `publish` must accept:
# before the checks followed their grammar, these reached the image step and ended in a traceback.
ACCEPTED_NAMES = ["aegis/fraud-detector", "aegis/fraud__v2.x--y", "localhost:5000/ml/fraud", "a" * 237,
                  "r.example/" + "a" * 245]
ACCEPTED_VERSIONS = ["1.0.0", "2.0.0-rc.1", "1.0.0-" + "x" * 122]


@pytest.mark.parametrize("name", ACCEPTED_NAMES)
@pytest.mark.parametrize("version", ACCEPTED_VERSIONS)
def test_accepted_names_are_written_by_the_image_step(name: str, version: str) -> None:
    assert build_fields.check_repository(name) is None and build_fields.check_version(version) is None
    tarball.normalize_repo_tag(f"{name}:{version}")
    image.with_ref_name(image.Descriptor(image.MEDIA_TYPE_MANIFEST, "sha256:" + "0" * 64, 1), version)
    # `publish` puts `[aegis-publish].registry` in front of a name without registry host.
    with_host = name if reference.names_registry(name.split("/", 1)[0]) else f"registry.example.com/{name}"
    reference.parse(f"{with_host}:{version}")


@pytest.mark.parametrize(
    "name,version", [("aegis/fraud", "1.0.0-rc.1+build"), ("aegis/fraud..x-", "1.0.0"), ("a" * 238, "1.0.0")]
)
def test_refused_names_are_those_the_image_step_refuses(name: str, version: str) -> None:
    assert build_fields.check_repository(name) or build_fields.check_version(version)
    with pytest.raises(ValueError, match="invalid repo tag"):
        tarball.normalize_repo_tag(f"{name}:{version}")


def test_annotations() -> None:
    assert build_fields.check_annotations({"org.opencontainers.image.vendor": "Acme"}) is None
    assert build_fields.check_annotations({"org.opencontainers.image.title": "x"}) == (
        "'org.opencontainers.image.title' is set by Aegis from `model_id`; remove it"
    )
    assert build_fields.check_annotations({"io.containerd.anything": "x"}).endswith("(the image's name and tag); remove it")
    assert build_fields.check_annotations({"k" * 129: ""}).startswith(f"'{'k' * 60}'… is not an annotation key")
    assert build_fields.check_annotations({"com.example.k": "é" * 2049}) == (
        "the value of 'com.example.k' is 4098 bytes, at most 4096"
    )
    assert build_fields.check_annotations({f"k{i}": "" for i in range(64)}) is None


def test_git_sha() -> None:
    assert build_fields.is_git_sha("a" * 40)
    assert not build_fields.is_git_sha("A" * 40) and not build_fields.is_git_sha("a" * 39) and not build_fields.is_git_sha("g" * 40)
