"""The first command works from any checkout path: a folder with a space and a non-ASCII character
("My Models ü"), as laptops have them, packages the demo, to the same image as a plain path."""
from __future__ import annotations

import subprocess
from pathlib import Path

from tests.e2e.clones import REPO_ROOT, Clone, make_clone


def test_package_from_a_path_with_a_space_and_a_non_ascii_character(tmp_path: Path) -> None:
    root = tmp_path / "My Models ü" / "fraud repo"
    root.parent.mkdir()
    subprocess.run(["git", "clone", "--quiet", REPO_ROOT, str(root)], check=True)
    # Its own empty store: the pex tool is fetched from its file:// URL (the step the space used to break).
    odd = Clone(root=root, store=tmp_path / "store")
    odd.pants("package", "models/fraud::")
    assert (root / "dist/models/fraud/fraud/oci/index.json").is_file()
    # The same commit from a plain path, sharing that store: the same image.
    plain = make_clone(tmp_path, "plain")
    plain.store = odd.store
    plain.pants("package", "models/fraud::")
    assert odd.image_summary()["manifest_digest"] == plain.image_summary()["manifest_digest"]
