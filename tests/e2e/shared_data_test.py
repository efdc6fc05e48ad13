"""Skip or fail when an optional data set is missing: decided by the environment (no image is built here)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.shared_data import in_ci, require_shared

WHAT = "the PyPA advisory snapshot"


def test_present_data_is_found(tmp_path: Path) -> None:
    (tmp_path / "shared/vulndb").mkdir(parents=True)
    repo = str(tmp_path / "repo")
    assert require_shared("vulndb", WHAT, repo, env={}) == tmp_path / "shared/vulndb"
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "vulndb").mkdir(parents=True)
    assert require_shared("vulndb", WHAT, repo, env={"AEGIS_SHARED_DIR": str(elsewhere)}) == elsewhere / "vulndb"


@pytest.mark.parametrize("ci", [None, "", "0", "false"])
def test_missing_data_is_a_skip_with_the_reason_outside_ci(tmp_path: Path, ci) -> None:
    env = {} if ci is None else {"CI": ci}
    with pytest.raises(pytest.skip.Exception) as e:
        require_shared("vulndb", WHAT, str(tmp_path / "repo"), env=env)
    assert str(e.value) == (f"{tmp_path}/shared/vulndb is missing: {WHAT} (put it there, or point AEGIS_SHARED_DIR "
                            f"at a directory that has it)")


@pytest.mark.parametrize("ci", ["true", "1", "True"])
def test_missing_data_fails_in_ci(tmp_path: Path, ci: str) -> None:
    assert in_ci({"CI": ci})
    with pytest.raises(pytest.fail.Exception, match=r"shared/vulndb is missing: .*; CI requires it"):
        require_shared("vulndb", WHAT, str(tmp_path / "repo"), env={"CI": ci})
