from __future__ import annotations

import pytest

from aegis_plugin.core.python.requirements_lock import RequirementsLockError, canonical_name, parse, subset

H1, H2, H3 = ("sha256:" + c * 64 for c in "abc")
LOCK = f"""# generated
numpy==2.4.6 \\
    --hash={H1} \\
    --hash={H2}
    # via -r runtime-requirements.in
Safe_Tensors==0.8.0 ; python_version >= '3.9' \\
    --hash={H3}
"""


def test_parse() -> None:
    locked = parse(LOCK)
    assert [(r.name, r.version) for r in locked] == [("numpy", "2.4.6"), ("safe-tensors", "0.8.0")]
    assert locked[0].hashes == (H1, H2)
    assert "# via" not in locked[0].text and "python_version" in locked[1].text
    assert (locked[0].marker, locked[1].marker) == ("", "python_version >= '3.9'")


def test_subset_is_exactly_the_installed_distributions() -> None:
    text = subset(parse(LOCK), {"safe-tensors": "0.8.0"}, "runtime.lock").decode()
    assert "Safe_Tensors==0.8.0" in text and H3 in text and "numpy" not in text


def test_subset_refuses_an_unpinned_distribution() -> None:
    with pytest.raises(RequirementsLockError, match="numpy==9.9 is installed but not pinned in runtime.lock"):
        subset(parse(LOCK), {"numpy": "9.9"}, "runtime.lock")


def test_a_pin_without_hashes_is_an_error() -> None:
    with pytest.raises(RequirementsLockError, match="numpy==1.0 is not pinned by hash"):
        parse("numpy==1.0\n")


def test_canonical_name() -> None:
    assert canonical_name("Foo_Bar.baz") == "foo-bar-baz"
