import gzip
import io
import tarfile

from aegis_plugin.core.guards import inventory, pitfalls, testutil

FACTS = pitfalls.Facts(target="models/x:x", build_file="models/x/BUILD", python_lock="runtime.lock",
                       debian_lock="debian.lock", framework="torch")


def _check(python=(), debian=(), layers=(), **facts):
    image = inventory.from_cyclonedx(testutil.sbom(python=python, debian=debian))
    return [f.message for f in pitfalls.check(image, pitfalls.Facts(**{**FACTS.__dict__, **facts}), layers)]


def test_a_clean_cpu_image_passes() -> None:
    assert _check(python=[("numpy", "2.4.6"), ("safetensors", "0.8.0")],
                  debian=[("gcc-12-base", "12.2.0-14", "gcc-12"), ("libstdc++6", "12.2.0-14", "gcc-12")]) == []


def test_denied_and_training_only_packages() -> None:
    assert _check(python=[("jupyterlab", "4.2.0"), ("scikit-learn", "1.5.0")],
                  debian=[("gcc-12", "12.2.0-14", "gcc-12"), ("libpython3.11-dev", "3.11.2-6", "python3.11")],
                  training_only=("scikit-learn",)) == [
        "models/x:x: the runtime image carries jupyterlab 4.2.0, which [aegis-guards].deny_python denies ('jupyterlab'): "
        "remove what pulls it into the handler's dependencies",
        "models/x:x: the runtime image carries gcc-12 12.2.0-14, which [aegis-guards].deny_debian denies "
        "('gcc-[0-9][0-9]'): remove what pulls it into the handler's dependencies",
        "models/x:x: the runtime image carries libpython3.11-dev 3.11.2-6, which [aegis-guards].deny_debian denies "
        "('*-dev'): remove what pulls it into the handler's dependencies",
        "models/x:x: the runtime image carries scikit-learn 1.5.0, which only the training resolve requires: the "
        "handler (or its dependencies) must not import training code",
    ]


def _layer(path, files, compression: str = "gzip") -> str:
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w") as tar:
        for name, size in files:
            info = tarfile.TarInfo(name)
            info.size = size
            tar.addfile(info, io.BytesIO(b"\0" * size))
    if compression == "zstd":
        import zstandard

        path.write_bytes(zstandard.ZstdCompressor().compress(plain.getvalue()))
    else:
        path.write_bytes(gzip.compress(plain.getvalue(), mtime=0))
    return str(path)


def test_the_size_budget_lists_layers_and_largest_files(tmp_path) -> None:
    layers = [pitfalls.Layer("debian packages", 30_000_000,
                             _layer(tmp_path / "a", [("usr/lib/libbig.so", 5000), ("etc/x", 10)])),
              pitfalls.Layer("model files", 25_000_000,
                             _layer(tmp_path / "b", [("app/model/weights.safetensors", 9000)], compression="zstd"))]
    assert _check(layers=layers, size_budget_mb=60) == []
    image = inventory.from_cyclonedx(testutil.sbom())
    (finding,) = pitfalls.check(image, pitfalls.Facts(**{**FACTS.__dict__, "size_budget_mb": 50}), layers)
    assert finding.message == ("models/x:x: the image is 55.0 MB compressed, over its size_budget of 50 MB "
                               "(largest layer: debian packages)")
    assert finding.details["largest_files"][:2] == [{"path": "/app/model/weights.safetensors", "bytes": 9000},
                                                     {"path": "/usr/lib/libbig.so", "bytes": 5000}]


def test_accelerator_against_cuda_builds() -> None:
    assert _check(python=[("torch", "2.5.1+cu124"), ("nvidia-cublas-cu12", "12.4.5.8")],
                  debian=[("libcudart12", "12.4.127-1", "nvidia-cuda-toolkit")]) == [
        "models/x:x: accelerator is `cpu`, but the image carries the CUDA build nvidia-cublas-cu12 12.4.5.8: lock "
        "the CPU build, or declare accelerator=\"cuda-MAJOR.MINOR\"",
        "models/x:x: accelerator is `cpu`, but the image carries the CUDA build torch 2.5.1+cu124: lock the CPU "
        "build, or declare accelerator=\"cuda-MAJOR.MINOR\"",
        "models/x:x: accelerator is `cpu`, but the image carries the CUDA build libcudart12 12.4.127-1: lock the "
        "CPU build, or declare accelerator=\"cuda-MAJOR.MINOR\"",
    ]
    assert _check(python=[("torch", "2.5.1+cu124"), ("nvidia-cuda-runtime-cu12", "12.4.127")],
                  accelerator="cuda-12.4") == []
    assert _check(python=[("torch", "2.5.1+cu121")], accelerator="cuda-12.4") == [
        "models/x:x: accelerator is `cuda-12.4`, but torch 2.5.1+cu121 is built for CUDA 12.1"]
    assert _check(python=[("torch", "2.5.1+cpu")], accelerator="cuda-12.4") == [
        "models/x:x: accelerator is `cuda-12.4`, but torch 2.5.1+cpu is the CPU build: lock its CUDA 12.4 build"]
    assert _check(python=[("torch", "2.5.1")], accelerator="cuda-12.4") == [
        "models/x:x: accelerator is `cuda-12.4`, but neither the wheels nor the base image carry a CUDA 12.4 "
        "runtime (no +cu build of torch, no nvidia-cuda-runtime wheel, no libcudart package): it would run on the CPU"]
