from __future__ import annotations

from aegis_plugin.util_rules.core_process import AegisBuildError, core_error


def test_a_user_error_is_its_aegis_line_behind_the_context() -> None:
    stderr = b"warning: something noisy\naegis: first\naegis: inventory: image.git_sha: expected 40 hex digits\n"
    error = core_error("models/fraud:fraud", stderr)
    assert isinstance(error, AegisBuildError)
    assert str(error) == "models/fraud:fraud: inventory: image.git_sha: expected 40 hex digits"


def test_anything_else_is_a_bug_shown_whole() -> None:
    stderr = "Traceback (most recent call last):\n  File \"x.py\"\nKeyError: 'é'\n".encode()
    assert str(core_error("m:m", stderr)) == "m:m: Traceback (most recent call last):\n  File \"x.py\"\nKeyError: 'é'"
