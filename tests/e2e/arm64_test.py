"""A linux/arm64 image, built on this amd64 machine without emulation: its Debian base and its wheels are
arm64's, it shares the model's layers with the amd64 image of the same model, and its contract test runs it
under qemu user-mode emulation (qemu-user-static, which build-support/test.sh installs)."""
from __future__ import annotations

import gzip
import json
import re
import struct
import tarfile
from pathlib import Path

from tests.e2e.clones import make_clone

EM_X86_64, EM_AARCH64 = 62, 183  # ELF e_machine


def arm64_target(build: str) -> str:
    """The demo's `model_package`, for linux/arm64 under a target and repository of its own."""
    start = build.index('model_package(\n    name="fraud",')
    block = build[start:build.index("\n)\n", start) + 3]
    return block.replace('name="fraud",', 'name="fraud-arm64",\n    platforms=["linux/arm64"],\n'
                                          '    repository="aegis/fraud-detector-arm64",')


def image(layout: Path) -> tuple[dict, dict]:
    index = json.loads((layout / "index.json").read_text())
    (entry,) = [m for m in index["manifests"] if "artifactType" not in m]
    manifest = json.loads((layout / "blobs/sha256" / entry["digest"][7:]).read_text())
    config = json.loads((layout / "blobs/sha256" / manifest["config"]["digest"][7:]).read_text())
    return entry, {"manifest": manifest, "config": config}


def elf_machines(layout: Path, layer: dict, suffixes: tuple) -> dict[str, int]:
    """e_machine of every file in a gzip layer whose name ends with one of `suffixes`."""
    machines = {}
    with tarfile.open(fileobj=gzip.open(layout / "blobs/sha256" / layer["digest"][7:])) as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(suffixes):
                header = tar.extractfile(member).read(20)  # type: ignore[union-attr]
                if header[:4] == b"\x7fELF":
                    machines[member.name] = struct.unpack("<H", header[18:20])[0]
    return machines


def test_an_arm64_image_built_here_runs_under_emulation(tmp_path: Path) -> None:
    clone = make_clone(tmp_path, "arm64")
    build = clone.root / "models/fraud/BUILD"
    build.write_text(build.read_text() + arm64_target(build.read_text()))
    clone.pants("package", "models/fraud:fraud", "models/fraud:fraud-arm64")
    amd64_entry, amd64 = image(clone.root / "dist/models/fraud/fraud/oci")
    arm64_layout = clone.root / "dist/models/fraud/fraud-arm64/oci"
    arm64_entry, arm64 = image(arm64_layout)

    assert (amd64["config"]["architecture"], arm64["config"]["architecture"]) == ("amd64", "arm64")
    assert arm64_entry["platform"] == {"architecture": "arm64", "os": "linux"}
    base, deps = arm64["manifest"]["layers"][:2]
    assert elf_machines(arm64_layout, base, ("bin/python3.11",)) == {"usr/bin/python3.11": EM_AARCH64}
    amd64_base = amd64["manifest"]["layers"][0]
    assert elf_machines(clone.root / "dist/models/fraud/fraud/oci", amd64_base, ("bin/python3.11",)) == {
        "usr/bin/python3.11": EM_X86_64}
    extensions = elf_machines(arm64_layout, deps, (".so",))
    assert extensions and set(extensions.values()) == {EM_AARCH64}, extensions
    assert any("aarch64-linux-gnu" in name for name in extensions)

    # The weights, the model's other files and the card are the same blobs in both images; the rest is each
    # platform's own.
    digests = [[layer["digest"] for layer in i["manifest"]["layers"]] for i in (amd64, arm64)]
    assert digests[0][2:5] == digests[1][2:5]
    assert digests[0][0] != digests[1][0] and digests[0][1] != digests[1][1]

    bom = json.loads((clone.root / "dist/models/fraud/fraud-arm64/sbom.cdx.json").read_text())
    debian = [c["purl"] for c in bom["components"] if c.get("purl", "").startswith("pkg:deb/")]
    assert debian and all("arch=arm64" in p or "arch=all" in p for p in debian)
    assert "arch=arm64" in bom["metadata"]["component"]["purl"]

    result = clone.pants("test", "--test-output=all", "models/fraud:fraud-arm64")
    output = result.stdout + result.stderr
    assert "linux/arm64 image, run under qemu-aarch64-static" in output, output
    assert re.search(r"\b(\d+) of \1 checks passed", output), output
    assert "✓ models/fraud:fraud-arm64 succeeded" in output, output
