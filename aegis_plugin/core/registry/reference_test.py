import pytest

from aegis_plugin.core.registry.reference import Reference, ReferenceError, parse

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    "text, expected",
    [
        ("127.0.0.1:5000/ml/fraud:1.0.0", Reference("127.0.0.1:5000", "ml/fraud", "1.0.0")),
        (f"registry.example.com/fraud@{DIGEST}", Reference("registry.example.com", "fraud", None, DIGEST)),
        (f"localhost/a/b:v1@{DIGEST}", Reference("localhost", "a/b", "v1", DIGEST)),
    ],
)
def test_parse(text: str, expected: Reference) -> None:
    assert parse(text) == expected and str(expected) == text


@pytest.mark.parametrize(
    "text, message",
    [
        ("fraud:1.0.0", "name the registry explicitly"),
        ("ml/fraud:1.0.0", "name the registry explicitly"),
        ("r.example.com/Fraud:1", "not a valid repository name"),
        ("r.example.com/fraud:bad tag", "not a valid tag"),
        ("r.example.com/fraud@sha256:abc", "64 lowercase hex digits"),
    ],
)
def test_bad_references(text: str, message: str) -> None:
    with pytest.raises(ReferenceError, match=message):
        parse(text)


def test_loopback_name_and_digest() -> None:
    assert parse("127.0.0.1:5000/x:1").is_loopback and parse("localhost:5000/x:1").is_loopback
    assert not parse("registry.example.com/x:1").is_loopback
    ref = parse("r.example.com/x:1")
    assert ref.with_digest(DIGEST) == Reference("r.example.com", "x", None, DIGEST)
    assert ref.name == "r.example.com/x"
