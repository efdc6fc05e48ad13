"""`build-support/changed.sh` selects exactly the models a change affects, and everything when it cannot tell."""
from __future__ import annotations

import pytest

from tests.e2e.clones import Clone, make_clone

FRAUD, SENTIMENT, TURBINE = "models/fraud:fraud", "models/sentiment:sentiment", "models/turbine:turbine"
NO_PANTSD = {"PANTS_PANTSD": "false"}


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Clone:
    return make_clone(tmp_path_factory.mktemp("changed"), "repo")


def selected(clone: Clone, edit: str) -> list[str]:
    """The model_package targets `changed.sh --list` selects after appending a line to `edit`."""
    path = clone.root / edit
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"\n# an edit\n")
        result = clone.run(["build-support/changed.sh", "--since", "HEAD", "--list", "package"], env=NO_PANTSD)
    finally:
        path.write_bytes(original)
    return result.stdout.split()


@pytest.mark.parametrize(
    "edit, expected",
    [
        ("models/shared/textfeatures.py", [FRAUD, SENTIMENT]),  # the shared library: both models
        ("models/fraud/server/handler.py", [FRAUD]),  # inside one model: that one
        ("models/sentiment/model_card.md", [SENTIMENT]),
        ("README.md", []),  # unrelated: none
        ("models/turbine/server/handler.py", [TURBINE]),
        ("aegis_plugin/goals/package.py", [FRAUD, SENTIMENT, TURBINE]),  # the plugin: everything
        ("pants.toml", [FRAUD, SENTIMENT, TURBINE]),
        ("3rdparty/python/runtime.lock", [FRAUD, SENTIMENT, TURBINE]),  # a lock: Pants cannot tell its users
        ("3rdparty/python/pytorch.lock", [FRAUD, SENTIMENT, TURBINE]),
    ],
)
def test_selection(clone: Clone, edit: str, expected: list[str]) -> None:
    assert selected(clone, edit) == expected


def test_no_change_selects_nothing_and_a_bad_ref_is_refused(clone: Clone) -> None:
    listed = clone.run(["build-support/changed.sh", "--since", "HEAD", "--list", "package"], env=NO_PANTSD)
    assert listed.stdout.split() == []
    bad = clone.run(["build-support/changed.sh", "--since", "no-such-ref", "package"], check=False, env=NO_PANTSD)
    assert bad.returncode == 2 and "changed.sh: unknown git ref no-such-ref" in bad.stderr


def test_the_ci_example_runs_only_commands_that_work(clone: Clone) -> None:
    """Every command of build-support/ci/github-actions.yml, with the CI's refs, selects without error."""
    workflow = (clone.root / "build-support/ci/github-actions.yml").read_text()
    lines = [line.strip().removeprefix("run:").strip() for line in workflow.splitlines()]
    commands = [line for line in lines if line.startswith("build-support/")]
    assert len(commands) == 6, commands
    # The Pants options the workflow sets (with a sample value where GitHub fills one in) must be valid.
    options = dict(line.split(": ", 1) for line in lines if line.startswith("PANTS_AEGIS_"))
    assert options["PANTS_AEGIS_PUBLISH_SIGNING"] == "keyless"
    options = {name: value.replace("${{ github.workflow_ref }}", "acme/models/.github/workflows/aegis.yml@refs/heads/main")
               .replace("${{ github.repository_owner }}", "acme") for name, value in options.items()}
    for command in commands:
        assert command.startswith("build-support/changed.sh --since "), command
        ref = command.split()[2].strip('"').replace("origin/${GITHUB_BASE_REF}", "HEAD~1")
        goal = command.split()[3]
        assert goal in ("package", "test", "lint", "publish")
        result = clone.run(["build-support/changed.sh", "--since", ref, "--list", goal], env={**NO_PANTSD, **options})
        assert result.returncode == 0
