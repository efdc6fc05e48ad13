"""`pants test` on a model_package runs the contract test against the built image, cached by its digest."""
from __future__ import annotations

import json

from tests.e2e.clones import make_clone

TARGET = "models/fraud:fraud"


def test_contract_test_passes_is_cached_and_catches_a_wrong_answer(tmp_path) -> None:
    clone = make_clone(tmp_path, "contract")
    first = clone.pants("test", TARGET)
    assert f"✓ {TARGET} succeeded" in first.stderr, first.stderr

    # Same image digest, same examples: the result comes from the cache, nothing runs.
    again = clone.pants("test", TARGET)
    assert f"✓ {TARGET} succeeded" in again.stderr and "(cached locally)" in again.stderr, again.stderr

    # A changed expected output is caught by the example check (the image itself is unchanged).
    examples_path = clone.root / "models/fraud/server/examples.json"
    examples = json.loads(examples_path.read_text())
    examples[0]["outputs"]["fraud_probability"] = [0.5]
    examples_path.write_text(json.dumps(examples))
    failed = clone.pants("test", TARGET, "--test-output=all", check=False)
    assert failed.returncode != 0
    assert f"✕ {TARGET} failed" in failed.stderr, failed.stderr
    assert "FAIL" in failed.stdout + failed.stderr and "example 1/" in failed.stdout + failed.stderr
