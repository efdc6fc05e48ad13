"""The pitfall rules on a built image: bloat (denied and training-only packages, the size budget) and an
accelerator that disagrees with the CUDA builds the image carries. (`:latest` and floating references, and
the model card, are refused earlier: when the BUILD file is read and while the layers are built.)"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from aegis_plugin.core.guards.findings import Finding
from aegis_plugin.core.guards.inventory import Inventory, Package
from aegis_plugin.core.guards.osv import normalize
from aegis_plugin.core.guards.defaults import DENY_DEBIAN, DENY_PYTHON
from aegis_plugin.core.oci.compression import open_layer_tar

# CUDA builds: wheels and Debian packages that only make sense with an NVIDIA GPU.
_CUDA_PYTHON = re.compile(r"^(nvidia-.*|.*-cu\d+|.*-cuda\d*(x)?|cupy-cuda.*|jax-cuda.*|tensorflow-gpu|onnxruntime-gpu)$")
_CUDA_DEBIAN = re.compile(r"^(libcuda.*|libcudart.*|libcublas.*|libcudnn.*|libnccl.*|libnvidia-.*|nvidia-.*|cuda-.*)$")
_LOCAL_CUDA = re.compile(r"\+cu(\d+)$")


@dataclass(frozen=True)
class Facts:
    """What the target declares, and where findings point."""

    target: str
    build_file: str
    python_lock: str
    debian_lock: str
    accelerator: str = "cpu"
    framework: str = ""
    size_budget_mb: Optional[float] = None
    deny_python: Tuple[str, ...] = DENY_PYTHON
    deny_debian: Tuple[str, ...] = DENY_DEBIAN
    training_only: Tuple[str, ...] = ()  # names only the training resolves ask for


@dataclass(frozen=True)
class Layer:
    description: str
    size: int  # compressed bytes
    blob: Optional[str] = None  # the path of the layer's blob, read only to list the largest files


def check(inventory: Inventory, facts: Facts, layers: Sequence[Layer]) -> List[Finding]:
    return [*_denied(inventory, facts), *_training_only(inventory, facts), *_size(facts, layers),
            *_accelerator(inventory, facts)]


def _denied(inventory: Inventory, facts: Facts) -> List[Finding]:
    found = []
    for packages, patterns, lock, option in ((inventory.python(), facts.deny_python, facts.python_lock, "deny_python"),
                                             (inventory.debian(), facts.deny_debian, facts.debian_lock, "deny_debian")):
        for package in packages:
            name = normalize(package.ecosystem, package.name)
            pattern = next((p for p in patterns if fnmatch.fnmatchcase(name, normalize(package.ecosystem, p))), None)
            if pattern:
                found.append(Finding(
                    "bloat-denied", "error",
                    f"{facts.target}: the runtime image carries {package.name} {package.version}, which "
                    f"[aegis-guards].{option} denies ({pattern!r}): remove what pulls it into the handler's dependencies",
                    lock, package.purl))
    return found


def _training_only(inventory: Inventory, facts: Facts) -> List[Finding]:
    training = {normalize("PyPI", n) for n in facts.training_only}
    return [Finding(
        "bloat-training-only", "error",
        f"{facts.target}: the runtime image carries {p.name} {p.version}, which only the training resolve "
        f"requires: the handler (or its dependencies) must not import training code",
        facts.python_lock, p.purl) for p in inventory.python() if normalize("PyPI", p.name) in training]


def _size(facts: Facts, layers: Sequence[Layer]) -> List[Finding]:
    if facts.size_budget_mb is None:
        return []
    total = sum(layer.size for layer in layers)
    budget = int(facts.size_budget_mb * 1_000_000)
    if total <= budget:
        return []
    per_layer = [{"layer": layer.description, "bytes": layer.size} for layer in layers]
    return [Finding(
        "bloat-size-budget", "error",
        f"{facts.target}: the image is {total / 1e6:.1f} MB compressed, over its size_budget of "
        f"{facts.size_budget_mb:g} MB (largest layer: {max(per_layer, key=lambda l: l['bytes'])['layer']})",
        facts.build_file, details={"layers": per_layer, "largest_files": largest_files(layers)})]


def largest_files(layers: Sequence[Layer], count: int = 10) -> List[Dict[str, object]]:
    """The biggest files of the image (uncompressed), from its layer blobs."""
    sizes = []
    for layer in layers:
        if layer.blob is None:
            continue
        with open_layer_tar(layer.blob) as tar:
            sizes += [("/" + m.name.lstrip("./"), m.size) for m in tar if m.isfile()]
    return [{"path": path, "bytes": size} for path, size in sorted(sizes, key=lambda s: (-s[1], s[0]))[:count]]


def _accelerator(inventory: Inventory, facts: Facts) -> List[Finding]:
    cuda_wheels = [p for p in inventory.python() if _CUDA_PYTHON.match(normalize("PyPI", p.name))
                   or _LOCAL_CUDA.search(p.version)]
    cuda_debs = [p for p in inventory.debian() if _CUDA_DEBIAN.match(p.name)]
    if facts.accelerator == "cpu":
        return [Finding(
            "accelerator-cuda", "error",
            f"{facts.target}: accelerator is `cpu`, but the image carries the CUDA build {p.name} {p.version}: "
            f"lock the CPU build, or declare accelerator=\"cuda-MAJOR.MINOR\"",
            facts.python_lock if p.ecosystem == "PyPI" else facts.debian_lock, p.purl)
            for p in cuda_wheels + cuda_debs]
    wanted = facts.accelerator.split("-", 1)[1]  # "12.4"
    found = []
    runtimes: List[Tuple[Package, str]] = []
    for p in inventory.python():
        local = _LOCAL_CUDA.search(p.version)
        if local:
            digits = local.group(1)
            runtimes.append((p, f"{digits[:-1]}.{digits[-1]}"))
        elif re.match(r"^nvidia-cuda-runtime-cu\d+$", normalize("PyPI", p.name)):
            runtimes.append((p, ".".join(p.version.split(".")[:2])))
        elif p.name.lower() == facts.framework.lower() and p.version.endswith("+cpu"):
            found.append(Finding(
                "accelerator-cuda", "error",
                f"{facts.target}: accelerator is `{facts.accelerator}`, but {p.name} {p.version} is the CPU build: "
                f"lock its CUDA {wanted} build", facts.python_lock, p.purl))
    for p in inventory.debian():
        if p.name.startswith("libcudart"):
            upstream = p.version.split(":", 1)[-1]
            runtimes.append((p, ".".join(upstream.split(".")[:2])))
    for p, version in runtimes:
        if version != wanted:
            found.append(Finding(
                "accelerator-cuda", "error",
                f"{facts.target}: accelerator is `{facts.accelerator}`, but {p.name} {p.version} is built for CUDA "
                f"{version}", facts.python_lock if p.ecosystem == "PyPI" else facts.debian_lock, p.purl))
    if not runtimes and not found:
        found.append(Finding(
            "accelerator-cuda", "error",
            f"{facts.target}: accelerator is `{facts.accelerator}`, but neither the wheels nor the base image carry "
            f"a CUDA {wanted} runtime (no +cu build of {facts.framework or 'the framework'}, no nvidia-cuda-runtime "
            f"wheel, no libcudart package): it would run on the CPU", facts.build_file))
    return found
