"""The PyTorch demo (models/turbine): torch with its CUDA 12.1 wheels packages, passes the guards, and its
contract test shows the designed behaviour of the machine it runs on: without an NVIDIA GPU the image stays
not ready and serves nothing (never on the CPU); with one, the examples are answered on the GPU."""
from __future__ import annotations

import os

import pytest

from tests.e2e.clones import Clone, make_clone

TARGET = "models/turbine:turbine"


def has_nvidia_gpu() -> bool:
    return os.path.exists("/dev/nvidiactl") and any(n.startswith("nvidia") and n[6:].isdigit() for n in os.listdir("/dev"))


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Clone:
    return make_clone(tmp_path_factory.mktemp("pytorch"), "repo")


def test_the_contract_matches_the_machine(clone: Clone) -> None:
    result = clone.pants("test", TARGET, "--test-output=all")
    output = result.stdout + result.stderr
    assert f"✓ {TARGET} succeeded" in result.stderr, output
    if has_nvidia_gpu():
        assert "accelerator cuda-12.1 declared, NVIDIA GPU passed in: /dev/nvidiactl" in output, output
        assert "PASS  example 4/4" in output, output
    else:
        assert ("accelerator cuda-12.1 declared, no NVIDIA GPU here: checking that nothing is served on the CPU"
                in output), output
        for check in ("live", "not ready: /v2/health/ready stays 503", "model not ready",
                      "inference refused (503 naming cuda-12.1)", "handler never constructed"):
            assert f"PASS  {check}" in output, output
        assert "PASS  example" not in output, output


def test_the_image_carries_torch_and_the_cuda_runtime_and_the_guards_hold(clone: Clone) -> None:
    clone.pants("package", TARGET)  # the image the contract test built: its processes come from the cache
    summary = clone.image_summary("models/turbine/turbine")
    layers = {layer["description"]: layer for layer in summary["layers"]}
    deps = layers["python distributions from pytorch.lock"]
    assert deps["size"] > 1_000_000_000 and deps["media_type"].endswith("tar+gzip")
    lock = (clone.root / "dist/models/turbine/turbine/sbom.cdx.json").read_text()
    for name in ("torch", "nvidia-cuda-runtime-cu12", "nvidia-cudnn-cu12", "triton"):
        assert f'"name": "{name}"' in lock or f'"name":"{name}"' in lock, name
    assert clone.pants("lint", TARGET).returncode == 0

    build = clone.root / "models/turbine/BUILD"
    original = build.read_text()
    try:
        build.write_text(original.replace('accelerator="cuda-12.1"', 'accelerator="cuda-12.4"'))
        failed = clone.pants("lint", TARGET, check=False)
        assert failed.returncode != 0
        assert ("models/turbine:turbine: accelerator is `cuda-12.4`, but nvidia-cuda-runtime-cu12 12.1.105 is built "
                "for CUDA 12.1") in failed.stdout + failed.stderr, failed.stdout + failed.stderr
        build.write_text(original.replace('    accelerator="cuda-12.1",\n', ""))
        failed = clone.pants("lint", TARGET, check=False)
        assert failed.returncode != 0
        assert "models/turbine:turbine: accelerator is `cpu`, but the image carries the CUDA build" in (
            failed.stdout + failed.stderr)
    finally:
        build.write_text(original)
