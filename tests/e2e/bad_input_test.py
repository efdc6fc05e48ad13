"""Bad input fails `package` with one actionable line naming the target and field, and writes nothing."""
from __future__ import annotations

import os
import shutil
import struct

import pytest

from tests.e2e.clones import Clone, make_clone

FIELDS = dict(
    model_id='"bad-model"',
    version='"1.0.0"',
    weights='":weights"',
    tokenizer='":tokenizer"',
    model_card='"model_card.md"',
    handler='"models/fraud/server/handler.py"',
    framework='"numpy"',
)


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Clone:
    return make_clone(tmp_path_factory.mktemp("bad"), "repo")


def write_model(clone: Clone, **overrides: str) -> None:
    bad = clone.root / "models/bad"
    shutil.rmtree(bad, ignore_errors=True)
    bad.mkdir()
    for name in ["weights.safetensors", "tokenizer.json", "model_card.md"]:
        shutil.copy(clone.root / "models/fraud" / name, bad / name)
    card = bad / "model_card.md"
    card.write_text(card.read_text().replace("- model_id: fraud-detector", "- model_id: bad-model"))
    fields = {**FIELDS, **overrides}
    args = "".join(f"    {key}={value},\n" for key, value in fields.items() if value is not None)
    (bad / "BUILD").write_text(
        'file(name="weights", source="weights.safetensors")\n'
        'file(name="tokenizer", source="tokenizer.json")\n'
        f'model_package(\n    name="bad",\n{args})\n'
    )


def assert_fails(clone: Clone, *expected: str, spec: str = "models/bad::", names: str = "models/bad:bad") -> None:
    result = clone.pants("package", spec, check=False)
    assert result.returncode != 0, result.stdout
    error_lines = [l for l in result.stderr.splitlines() if names in l]
    assert error_lines, result.stderr
    assert any(all(e in line for e in expected) for line in error_lines), "\n".join(error_lines)
    assert not (clone.root / "dist/models/bad").exists(), "a failed package must write nothing"


def test_missing_model_card(clone: Clone) -> None:
    write_model(clone, model_card='"no_such_card.md"')
    assert_fails(clone, "'model_card' field", "models/bad:bad")


def test_model_card_is_required(clone: Clone) -> None:
    write_model(clone, model_card=None)
    assert_fails(clone, "model_card")


def test_non_semver_version(clone: Clone) -> None:
    write_model(clone, version='"1.0"')
    assert_fails(clone, "models/bad:bad: field `version`", "'1.0' is not a semantic version")


def test_latest_version(clone: Clone) -> None:
    write_model(clone, version='"latest"')
    assert_fails(clone, "field `version`", "'latest' is not a semantic version")


def test_latest_repository(clone: Clone) -> None:
    write_model(clone, repository='"registry.example.com/ml/bad:latest"')
    assert_fails(clone, "field `repository`", "never `latest`")


def test_base_image_by_tag(clone: Clone) -> None:
    write_model(clone, base_image='"debian:12-slim"')
    assert_fails(clone, "field `base_image`", "is given by tag '12-slim'", "pin it by digest")


def test_base_image_latest(clone: Clone) -> None:
    write_model(clone, base_image='"python:latest"')
    assert_fails(clone, "field `base_image`", "tag 'latest'")


def test_weights_sha256_mismatch(clone: Clone) -> None:
    write_model(clone, weights_sha256='"' + "0" * 64 + '"')
    assert_fails(clone, "field `weights_sha256`", "expected " + "0" * 64)


def test_weights_not_safetensors(clone: Clone) -> None:
    write_model(clone)
    (clone.root / "models/bad/weights.safetensors").write_bytes(b"PK\x03\x04 this is a zip, not safetensors")
    assert_fails(clone, "field `weights`", "not a valid safetensors file")


def test_weights_header_longer_than_file(clone: Clone) -> None:
    write_model(clone)
    (clone.root / "models/bad/weights.safetensors").write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    assert_fails(clone, "field `weights`", "header length 1099511627776 exceeds the file size (10 bytes)")


def test_symlink_outside_repo(clone: Clone) -> None:
    """Pants refuses to read a directory holding such a link (before any target exists, so the error
    names the link rather than a field); nothing is built."""
    write_model(clone)
    os.symlink("/etc/hostname", clone.root / "models/bad/extra")
    assert_fails(clone, "Failed to read link", "models/bad/extra", "Absolute symlink", names="models/bad/extra")


def test_relative_symlink_outside_repo(clone: Clone) -> None:
    write_model(clone)
    (clone.root / "models/bad/data").mkdir()
    os.symlink("../../../../../etc/hostname", clone.root / "models/bad/data/extra")
    assert_fails(clone, "models/bad:bad: field `handler`:", "models/bad/data/extra",
                 "may not traverse outside of the buildroot", spec="models/bad:bad")


def test_model_card_missing_a_section(clone: Clone) -> None:
    write_model(clone)
    card = clone.root / "models/bad/model_card.md"
    text = card.read_text()
    start = text.index("## Training data")
    end = text.index("\n## ", start + 1)
    card.write_text(text[:start] + text[end + 1:])
    assert_fails(clone, "models/bad:bad: field `model_card`", "model card is missing section: Training data")


def test_model_card_disagreeing_with_the_target(clone: Clone) -> None:
    write_model(clone)
    card = clone.root / "models/bad/model_card.md"
    card.write_text(card.read_text().replace("- version: 1.0.0", "- version: 0.9.0"))
    assert_fails(
        clone, "models/bad:bad: field `model_card`: the card says version '0.9.0', but the target's `version` is "
        "'1.0.0': update one of them"
    )


def _write_handler(clone: Clone, edit) -> None:
    """The bad model with its own handler: the demo's, edited."""
    write_model(clone, handler='"models/bad/server/handler.py"')
    text = (clone.root / "models/fraud/server/handler.py").read_text()
    (clone.root / "models/bad/server").mkdir()
    (clone.root / "models/bad/server/handler.py").write_text(edit(text))
    (clone.root / "models/bad/server/BUILD").write_text("python_sources()\n")


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda t: t + "\ndef broken(:\n    pass\n", "syntax error"),
        (lambda t: t.replace("import json\n", "import json\nimport torch\n", 1), "imports `torch`"),  # not in the runtime lock
        (lambda t: t.replace("import json\n", "import json\nimport sklearn\n", 1), "imports `sklearn`"),  # training-only
        (lambda t: t.replace("class Handler", "class Model"), "no `Handler` class"),
    ],
    ids=["syntax-error", "not-in-the-lock", "training-only", "no-handler-class"],
)
def test_handler_that_cannot_start(clone: Clone, edit, expected: str) -> None:
    _write_handler(clone, edit)
    assert_fails(clone, "models/bad:bad: field `handler`: models/bad/server/handler.py", expected)


def test_an_unparsable_build_file_elsewhere_is_named(clone: Clone) -> None:
    # Pants' import inference reads every BUILD file; its own message names none of them.
    write_model(clone)
    unrelated = clone.root / "models/unrelated"
    unrelated.mkdir()
    try:
        (unrelated / "BUILD").write_text('python_sources(\n    name="x",\n    sources=["*.py"]\n')
        assert_fails(clone, "models/bad:bad: field `handler`:", "models/unrelated/BUILD:", "does not parse")
    finally:
        shutil.rmtree(unrelated)


def test_two_packages_with_one_output_path(clone: Clone) -> None:
    write_model(clone, output_path='"models/shared-dist"')
    build = clone.root / "models/bad/BUILD"
    text = build.read_text()
    second = "model_package(" + text.split("model_package(", 1)[1].replace('name="bad"', 'name="bad-too"')
    build.write_text(text + second)
    assert_fails(clone, "models/bad:bad: field `output_path`: models/bad:bad-too writes dist/models/shared-dist too",
                 spec="models/bad:bad")
