"""Two clean clones with separate Pants stores build byte-identical outputs, and the layers split as designed."""
from __future__ import annotations

import json
import shutil
import subprocess
import tarfile

from tests.e2e.clones import make_clone, tree_digests

OUT = "models/fraud/fraud"


def test_two_clean_clones_build_identical_bytes(tmp_path) -> None:
    a, b = make_clone(tmp_path, "a"), make_clone(tmp_path, "b")
    a.pants("package", "models/fraud::")
    assert not (a.root / "dist" / OUT / "image.tar").exists(), "image.tar is a second copy: only when asked"
    a.pants("--aegis-docker-archive", "package", "models/fraud::")
    b.pants("--aegis-docker-archive", "package", "models/fraud::")
    summary_a, summary_b = a.image_summary(), b.image_summary()
    assert summary_a["manifest_digest"] == summary_b["manifest_digest"]
    files_a, files_b = tree_digests(a.root / "dist"), tree_digests(b.root / "dist")
    assert files_a == files_b
    for name in ("image.tar", "oci/index.json", "sbom.cdx.json", "sbom.spdx.json", "sbom.spdx3.json",
                 "sbom-completeness.json"):
        assert f"{OUT}/{name}" in files_a

    # Standard tools accept both forms, for the same manifest digest.
    layout, tar = a.root / "dist" / OUT / "oci", a.root / "dist" / OUT / "image.tar"
    subprocess.run(["umoci", "ls", "--layout", str(layout)], check=True, capture_output=True)
    for ref in (f"oci:{layout}:1.0.0", f"oci-archive:{tar}:1.0.0"):
        inspect = json.loads(
            subprocess.run(["skopeo", "inspect", ref], check=True, capture_output=True, text=True).stdout
        )
        assert inspect["Digest"] == summary_a["manifest_digest"]
    subprocess.run(["skopeo", "inspect", f"docker-archive:{tar}"], check=True, capture_output=True)


def test_image_contents_and_config(tmp_path) -> None:
    clone = make_clone(tmp_path, "c")
    clone.pants("package", "models/fraud::")
    bundle = tmp_path / "bundle"
    layout = clone.root / "dist" / OUT / "oci"
    subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{layout}:1.0.0", str(bundle)],
                   check=True, capture_output=True)
    rootfs = bundle / "rootfs"
    for path in ["app/model/weights.safetensors", "app/model/tokenizer.json", "app/model/model_card.md",
                 "app/server/handler.py", "app/server/healthcheck.py", "app/requirements.lock",
                 "app/manifest.yaml", "usr/bin/python3.11", "var/lib/dpkg/status.d/libc6"]:
        assert (rootfs / path).exists(), path
    manifest = (rootfs / "app/manifest.yaml").read_text()
    head = clone.git("rev-parse", "HEAD").strip()
    for key in ["model_id: \"fraud-detector\"", "version: \"1.0.0\"", "framework: \"numpy\"",
                "accelerator: \"cpu\"", "signed_by:"]:
        assert key in manifest
    git_sha = next(l for l in manifest.splitlines() if l.startswith("git_sha:")).split('"')[1]
    assert clone.git("merge-base", "--is-ancestor", git_sha, head) == ""
    lock = (rootfs / "app/requirements.lock").read_text()
    assert "numpy==" in lock and "--hash=sha256:" in lock and "scikit-learn" not in lock
    assert not (rootfs / "app/site-packages/sklearn").exists()  # training deps never ship

    config = json.loads((bundle / "config.json").read_text())
    assert config["process"]["user"]["uid"] == 65532 and config["process"]["user"]["gid"] == 65532
    assert config["process"]["args"][:3] == ["/usr/bin/python3.11", "-m", "aegis_runtime.server"]
    annotations = json.loads((layout / "index.json").read_text())
    assert annotations["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "1.0.0"

    # The weights have a plain-tar layer of their own, with fixed owners and mtime, readable by uid 65532.
    summary = clone.image_summary()
    weights_layer = summary["layers"][2]
    assert weights_layer["media_type"] == "application/vnd.oci.image.layer.v1.tar"
    assert [l["media_type"].endswith("+gzip") for l in summary["layers"]] == [True, True, False, True, True, True, True]
    weights_blob = layout / "blobs" / "sha256" / weights_layer["digest"].split(":")[1]
    with tarfile.open(weights_blob, "r:") as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert sorted(members) == ["app", "app/model", "app/model/weights.safetensors"]
    weights = members["app/model/weights.safetensors"]
    assert (weights.uid, weights.gid, weights.mode, weights.mtime) == (0, 0, 0o644, 0)


def test_code_edit_changes_only_the_app_and_sbom_layers_and_unrelated_commits_change_nothing(tmp_path) -> None:
    clone = make_clone(tmp_path, "d")
    clone.pants("package", "models/fraud::")
    before = clone.image_summary()

    # A commit that touches none of the package's inputs: same image, byte for byte.
    (clone.root / "README.md").write_text((clone.root / "README.md").read_text() + "\nAn unrelated edit.\n")
    clone.git("commit", "-qam", "unrelated")
    clone.pants("package", "models/fraud::")
    assert clone.image_summary()["manifest_digest"] == before["manifest_digest"]

    # A server-code edit: only the app layer and the SBOM that lists its files change.
    handler = clone.root / "models/fraud/server/handler.py"
    handler.write_text(handler.read_text() + "\n# A code edit.\n")
    clone.git("commit", "-qam", "edit the handler")
    clone.pants("package", "models/fraud::")
    after = clone.image_summary()
    old, new = [l["digest"] for l in before["layers"]], [l["digest"] for l in after["layers"]]
    assert old[:5] == new[:5], "base, dependencies, weights and model layers must be reused"
    assert old[5] != new[5] and old[6] != new[6]
    assert [l["description"] for l in after["layers"]][5:] == ["app", "SBOM"]
    assert after["manifest_digest"] != before["manifest_digest"]
    shutil.rmtree(clone.root / "dist")
