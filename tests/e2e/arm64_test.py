"""One `model_package` for linux/amd64 and linux/arm64, built on this amd64 machine without emulation: one
image index over two images, each with its platform's Debian base and wheels, the model's layers the same blobs
in both; its contract test runs both images, the arm64 one under qemu user-mode emulation (qemu-user-static,
which build-support/test.sh installs); `pants publish` pushes the index to a real registry, where cosign
verifies the index and each platform's image."""
from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import struct
import subprocess
import tarfile
from pathlib import Path

from aegis_plugin.core.registry.testutil import running_registry
from aegis_plugin.core.sign.testutil import cosign_binary, generate_key_pair
from tests.e2e.clones import make_clone

EM_X86_64, EM_AARCH64 = 62, 183  # ELF e_machine
TARGET = "models/fraud:fraud-multi"
IDENTITY = "ci@aegis.example"
PASSWORD = "correct horse"


def multi_platform_target(build: str) -> str:
    """The demo's `model_package`, for both platforms under a target and repository of its own."""
    start = build.index('model_package(\n    name="fraud",')
    block = build[start:build.index("\n)\n", start) + 3]
    return block.replace('name="fraud",', 'name="fraud-multi",\n    platforms=["linux/amd64", "linux/arm64"],\n'
                                          '    repository="aegis/fraud-detector-multi",')


def blob(layout: Path, digest: str) -> Path:
    return layout / "blobs/sha256" / digest[len("sha256:"):]


def elf_machines(layout: Path, layer: dict, suffixes: tuple) -> dict[str, int]:
    """e_machine of every file in a gzip layer whose name ends with one of `suffixes`."""
    machines = {}
    with tarfile.open(fileobj=gzip.open(blob(layout, layer["digest"]))) as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(suffixes):
                header = tar.extractfile(member).read(20)  # type: ignore[union-attr]
                if header[:4] == b"\x7fELF":
                    machines[member.name] = struct.unpack("<H", header[18:20])[0]
    return machines


def test_one_target_two_platforms_under_one_image_index(tmp_path: Path) -> None:
    clone = make_clone(tmp_path, "arm64")
    build = clone.root / "models/fraud/BUILD"
    build.write_text(build.read_text() + multi_platform_target(build.read_text()))
    clone.pants("package", TARGET)
    out = clone.root / "dist/models/fraud/fraud-multi"
    layout = out / "oci"

    # index.json tags the image index (and the ModelPack artifact beside it); the index names one manifest per
    # platform.
    (tagged, artifact) = json.loads((layout / "index.json").read_text())["manifests"]
    assert tagged["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert tagged["annotations"]["org.opencontainers.image.ref.name"] == "1.0.0"
    assert artifact["annotations"]["org.opencontainers.image.ref.name"] == "1.0.0_modelpack"
    entries = json.loads(blob(layout, tagged["digest"]).read_text())["manifests"]
    assert [e["platform"] for e in entries] == [{"architecture": "amd64", "os": "linux"},
                                                 {"architecture": "arm64", "os": "linux"}]
    manifests = [json.loads(blob(layout, e["digest"]).read_text()) for e in entries]
    configs = [json.loads(blob(layout, m["config"]["digest"]).read_text()) for m in manifests]
    assert [c["architecture"] for c in configs] == ["amd64", "arm64"]

    # Each platform's base and wheels are its own; the model's layers are the same blobs.
    amd64, arm64 = ([layer["digest"] for layer in m["layers"]] for m in manifests)
    assert amd64[2:6] == arm64[2:6] and amd64[0] != arm64[0] and amd64[1] != arm64[1]
    assert elf_machines(layout, manifests[0]["layers"][0], ("bin/python3.11",)) == {"usr/bin/python3.11": EM_X86_64}
    assert elf_machines(layout, manifests[1]["layers"][0], ("bin/python3.11",)) == {"usr/bin/python3.11": EM_AARCH64}
    extensions = elf_machines(layout, manifests[1]["layers"][1], (".so",))
    assert extensions and set(extensions.values()) == {EM_AARCH64}, extensions

    # Each platform's SBOMs in a directory of its own.
    for arch in ("amd64", "arm64"):
        bom = json.loads((out / f"linux-{arch}/sbom.cdx.json").read_text())
        debian = [c["purl"] for c in bom["components"] if c.get("purl", "").startswith("pkg:deb/")]
        assert debian and all(f"arch={arch}" in p or "arch=all" in p for p in debian)
        assert f"arch={arch}" in bom["metadata"]["component"]["purl"]

    # The standard tools read the index: skopeo copies both platforms to another layout.
    copy = tmp_path / "copy"
    subprocess.run(["skopeo", "copy", "--all", "-q", f"oci:{layout}:1.0.0", f"oci:{copy}:1.0.0"], check=True)

    result = clone.pants("test", "--test-output=all", TARGET)
    output = result.stdout + result.stderr
    assert "linux/amd64 image" in output and "linux/arm64 image, run under qemu-aarch64-static" in output, output
    assert len(re.findall(r"\b(\d+) of \1 checks passed", output)) == 2, output
    assert f"✓ {TARGET} succeeded" in output, output
    report = json.loads((clone.root / "dist/test/models.fraud.fraud-multi/contract-report.json").read_text())
    assert report["passed"] and sorted(report["platforms"]) == ["linux/amd64", "linux/arm64"]

    # Publish: the index, each platform's image by digest, each signed and attested; cosign checks them all.
    cosign = cosign_binary()
    keys = generate_key_pair(cosign, tmp_path / "keys", PASSWORD).parent
    signing = {"AEGIS_SIGNING_KEY_FILE": str(keys / "cosign.key"), "AEGIS_SIGNING_KEY_PASSWORD": PASSWORD}
    with running_registry(tmp_path / "registry") as registry:
        published = clone.pants(f"--aegis-signer-identity={IDENTITY}", f"--aegis-publish-registry={registry}",
                                "publish", TARGET, env=signing)
        repository = f"{registry}/aegis/fraud-detector-multi"
        tagged = re.search(rf"{re.escape(repository)}:1.0.0 -> (sha256:[0-9a-f]{{64}})", published.stdout)
        assert tagged, published.stdout + published.stderr
        index = tagged.group(1)
        check = ["--key", str(keys / "cosign.pub"), "--insecure-ignore-tlog=true", "--allow-http-registry"]
        # (Signed by IDENTITY, the images differ from those packaged above: their manifest.yaml names it.)
        platforms = dict(re.findall(r"^\s+linux/(amd64|arm64): (sha256:[0-9a-f]{64})$", published.stdout, re.M))
        assert sorted(platforms) == ["amd64", "arm64"], published.stdout
        for digest in (index, *platforms.values()):
            for command in (["verify"], ["verify-attestation", "--type", "cyclonedx"],
                            ["verify-attestation", "--type", "slsaprovenance1"]):
                checked = subprocess.run([cosign, *command, *check, f"{repository}@{digest}"], capture_output=True,
                                         text=True)
                assert checked.returncode == 0, (command, digest, checked.stderr)
        # The arm64 image's attestation is its own SBOM: arm64 Debian packages.
        attested = subprocess.run([cosign, "verify-attestation", "--type", "cyclonedx", *check,
                                   f"{repository}@{platforms['arm64']}"], capture_output=True, text=True)
        statement = json.loads(base64.b64decode(json.loads(attested.stdout.splitlines()[0])["payload"]))
        assert f"sha256:{statement['subject'][0]['digest']['sha256']}" == platforms["arm64"]
        assert "arch=arm64" in statement["predicate"]["metadata"]["component"]["purl"]
        # The registry serves the index's very bytes under the tag, and skopeo pulls it back, both platforms'
        # images with it, digests unchanged.
        raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{repository}:1.0.0"],
                             capture_output=True, check=True).stdout
        assert f"sha256:{hashlib.sha256(raw).hexdigest()}" == index
        pulled = tmp_path / "pulled"
        subprocess.run(["skopeo", "copy", "--all", "--preserve-digests", "-q", "--src-tls-verify=false",
                        f"docker://{repository}:1.0.0", f"oci:{pulled}:1.0.0"], check=True)
        (copied,) = json.loads((pulled / "index.json").read_text())["manifests"]
        assert copied["digest"] == index
        copied_index = json.loads(blob(pulled, index).read_text())
        assert [m["digest"] for m in copied_index["manifests"]] == [platforms["amd64"], platforms["arm64"]]
        assert all(blob(pulled, digest).is_file() for digest in platforms.values())
