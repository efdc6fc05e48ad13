from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from aegis_plugin.core.contract.sandbox import (EMULATOR_PATH, NVIDIA_LIB_DIR, GpuAccess, SandboxError, _to_inside,
                                                find_emulator, find_gpu, network_interfaces, resolve_user, start)
from aegis_plugin.core.contract.unpack import ImageConfig


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532::/home/nonroot:/sbin/nologin\n"
    )
    (tmp_path / "etc/group").write_text("root:x:0:\nnonroot:x:65532:\nstaff:x:50:\n")
    return tmp_path


@pytest.mark.parametrize(
    "user, ids",
    [("", (0, 0)), ("65532:65532", (65532, 65532)), ("65532", (65532, 65532)), ("1234", (1234, 0)),
     ("nonroot", (65532, 65532)), ("nonroot:staff", (65532, 50)), ("nonroot:7", (65532, 7)), ("root", (0, 0))],
)
def test_resolve_user(rootfs: Path, user: str, ids: tuple) -> None:
    assert resolve_user(user, rootfs) == ids


def test_resolve_user_unknown_names(rootfs: Path, tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="'nobody' is not in the image's /etc/passwd"):
        resolve_user("nobody", rootfs)
    with pytest.raises(SandboxError, match="'wheel' is not in the image's /etc/group"):
        resolve_user("nonroot:wheel", rootfs)
    assert resolve_user("42", tmp_path / "no-rootfs") == (42, 0)


def test_id_map_translation() -> None:
    id_map = [(65532, 0, 1)]  # what bwrap writes when root runs it: sandbox 65532 is host root
    assert _to_inside(0, id_map) == 65532
    assert _to_inside(1000, id_map) is None
    assert _to_inside(1005, [(0, 1000, 10)]) == 5


def test_network_interfaces_lists_loopback() -> None:
    assert "lo" in network_interfaces()


def touch(directory: Path, *names: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).write_text(f"{name}\n")


def test_find_gpu_without_a_gpu(tmp_path: Path) -> None:
    devices, libraries = tmp_path / "dev", tmp_path / "lib"
    touch(libraries, "libcuda.so.1")
    assert find_gpu(tmp_path / "missing", [str(libraries)]) is None
    touch(devices, "null", "nvidia-uvm")
    assert find_gpu(devices, [str(libraries)]) is None
    touch(devices, "nvidiactl")
    assert find_gpu(devices, [str(libraries)]) is None  # no nvidia<N>
    touch(devices, "nvidia0")
    assert find_gpu(devices, [str(tmp_path / "empty")]) is None  # no driver library


def test_find_gpu_finds_the_nodes_and_driver_libraries(tmp_path: Path) -> None:
    devices, lib64, lib = tmp_path / "dev", tmp_path / "lib64", tmp_path / "lib"
    touch(devices, "nvidiactl", "nvidia10", "nvidia1", "nvidia0", "nvidia-uvm", "nvidia-uvm-tools",
          "nvidia-modeset", "nvidia-caps", "null")
    touch(lib64, "libcuda.so.1", "libcuda.so", "libcuda.so.550.54.15", "libnvidia-ml.so.1",
          "libnvidia-ptxjitcompiler.so.1", "libnvidia-gpucomp.so.550.54.15", "libnvidia-glcore.so.550.54.15")
    touch(lib, "libcuda.so.1", "libnvidia-nvvm.so.4")
    gpu = find_gpu(devices, [str(lib64), str(lib)])
    assert gpu == GpuAccess(
        devices=tuple(str(devices / n) for n in ("nvidiactl", "nvidia0", "nvidia1", "nvidia10", "nvidia-uvm",
                                                 "nvidia-uvm-tools")),
        libraries=(str(lib64 / "libcuda.so.1"), str(lib64 / "libnvidia-gpucomp.so.550.54.15"),
                   str(lib64 / "libnvidia-ml.so.1"), str(lib / "libnvidia-nvvm.so.4"),
                   str(lib64 / "libnvidia-ptxjitcompiler.so.1")),
    )


def test_find_gpu_asks_ldconfig_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    devices, bin_dir = tmp_path / "dev", tmp_path / "bin"
    touch(devices, "nvidiactl", "nvidia0")
    bin_dir.mkdir()
    ldconfig = bin_dir / "ldconfig"
    ldconfig.write_text(
        "#!/bin/sh\n"
        "echo '4 libs found in the cache'\n"
        "printf '\\tlibnvidia-ml.so.1 (libc6,x86-64) => /opt/nv/libnvidia-ml.so.1\\n'\n"
        "printf '\\tlibcuda.so.1 (libc6) => /opt/nv32/libcuda.so.1\\n'\n"
        "printf '\\tlibcuda.so.1 (libc6,x86-64) => /opt/nv/libcuda.so.1\\n'\n"
        "printf '\\tlibcudart.so.12 (libc6,x86-64) => /opt/nv/libcudart.so.12\\n'\n"
    )
    ldconfig.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    gpu = find_gpu(devices)
    assert gpu is not None
    assert gpu.devices == (str(devices / "nvidiactl"), str(devices / "nvidia0"))
    # The 64-bit entries, before anything the usual directories hold; never the CUDA runtime (the image's own).
    assert gpu.libraries[:2] == ("/opt/nv/libcuda.so.1", "/opt/nv/libnvidia-ml.so.1")
    assert not any("libcudart" in library or "/opt/nv32/" in library for library in gpu.libraries)


@pytest.fixture
def shell_rootfs() -> Iterator[Path]:
    """A rootfs holding /bin/sh and the libraries it links (from `ldd`), reachable by the image's user."""
    base = Path(tempfile.mkdtemp(prefix="aegis-sandbox-test-"))
    os.chmod(base, 0o755)  # bwrap runs as the image's user when the test runs as root
    rootfs = base / "rootfs"
    shell = Path(os.path.realpath("/bin/sh"))
    linked = subprocess.run(["ldd", str(shell)], capture_output=True, text=True, check=True).stdout
    for path in [str(shell), *re.findall(r"(/\S+) \(0x", linked)]:
        target = rootfs / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    (rootfs / "bin").mkdir(exist_ok=True)
    if not (rootfs / "bin/sh").exists():
        (rootfs / "bin/sh").symlink_to(shell)
    for directory in ("tmp", "dev", "proc"):
        (rootfs / directory).mkdir(exist_ok=True)
    touch(base / "dev", "nvidiactl", "nvidia0", "nvidia-uvm")
    touch(base / "lib", "libcuda.so.1", "libnvidia-ml.so.1")
    for path in base.rglob("*"):
        path.chmod(0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)
    try:
        yield rootfs
    finally:
        shutil.rmtree(base)


SCRIPT = """
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
for node in /dev/nvidiactl /dev/nvidia0 /dev/nvidia-uvm /dev/nvidia-uvm-tools; do
    if read -r line < "$node"; then echo "$node: $line"; else echo "$node: missing"; fi
done
for lib in /tmp/aegis-nvidia/*; do read -r line < "$lib"; echo "$lib: $line"; done
if (echo x > /tmp/aegis-nvidia/extra) 2>/dev/null; then echo "writable"; else echo "read-only"; fi
"""


def test_start_passes_the_gpu_in(shell_rootfs: Path) -> None:
    assert shutil.which("bwrap"), "bwrap is needed: apt-get install -y bubblewrap"
    base = shell_rootfs.parent
    gpu = find_gpu(base / "dev", [str(base / "lib")])
    assert gpu is not None
    config = ImageConfig(entrypoint=("/bin/sh", "-c", SCRIPT), env=("LD_LIBRARY_PATH=/opt/lib", "A=1"),
                         user="65532:65532")
    container = start(config, shell_rootfs, base / "logs", gpu=gpu)
    assert container.process.wait(30) == 0, container.log_tail()

    argv = container.bwrap_argv
    binds = [argv[i:i + 3] for i, a in enumerate(argv) if a in ("--dev-bind", "--ro-bind")]
    assert binds == [
        ["--ro-bind", str(shell_rootfs), "/"],
        ["--dev-bind", str(base / "dev/nvidiactl"), "/dev/nvidiactl"],
        ["--dev-bind", str(base / "dev/nvidia0"), "/dev/nvidia0"],
        ["--dev-bind", str(base / "dev/nvidia-uvm"), "/dev/nvidia-uvm"],
        ["--ro-bind", str(base / "lib/libcuda.so.1"), f"{NVIDIA_LIB_DIR}/libcuda.so.1"],
        ["--ro-bind", str(base / "lib/libnvidia-ml.so.1"), f"{NVIDIA_LIB_DIR}/libnvidia-ml.so.1"],
    ]
    # The device nodes after bwrap's own /dev, the libraries in a tmpfs of their own made read-only.
    assert argv.index("--dev-bind") > argv.index("--dev")
    assert argv[argv.index(NVIDIA_LIB_DIR) - 1] == "--tmpfs"
    assert argv[argv.index("--remount-ro"):argv.index("--remount-ro") + 2] == ["--remount-ro", NVIDIA_LIB_DIR]
    assert container.env["LD_LIBRARY_PATH"] == f"{NVIDIA_LIB_DIR}:/opt/lib"
    assert container.env["A"] == "1"

    assert container.stdout_path.read_text().splitlines() == [
        f"LD_LIBRARY_PATH={NVIDIA_LIB_DIR}:/opt/lib",
        "/dev/nvidiactl: nvidiactl",
        "/dev/nvidia0: nvidia0",
        "/dev/nvidia-uvm: nvidia-uvm",
        "/dev/nvidia-uvm-tools: missing",
        f"{NVIDIA_LIB_DIR}/libcuda.so.1: libcuda.so.1",
        f"{NVIDIA_LIB_DIR}/libnvidia-ml.so.1: libnvidia-ml.so.1",
        "read-only",
    ]


def test_start_without_a_gpu_passes_nothing(shell_rootfs: Path) -> None:
    config = ImageConfig(entrypoint=("/bin/sh", "-c", SCRIPT), user="65532:65532")
    container = start(config, shell_rootfs, shell_rootfs.parent / "logs")
    assert container.process.wait(30) == 0, container.log_tail()
    assert "--dev-bind" not in container.bwrap_argv and NVIDIA_LIB_DIR not in container.bwrap_argv
    assert "LD_LIBRARY_PATH" not in container.env
    lines = container.stdout_path.read_text().splitlines()
    assert lines[:2] == ["LD_LIBRARY_PATH=", "/dev/nvidiactl: missing"]


def test_find_emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_emulator("amd64", machine="x86_64") is None and find_emulator("arm64", machine="aarch64") is None
    assert find_emulator("", machine="x86_64") is None  # a config that names no architecture runs natively
    qemu = tmp_path / "qemu-aarch64-static"
    qemu.write_text("")
    qemu.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_emulator("arm64", machine="x86_64") == str(qemu)
    with pytest.raises(SandboxError, match=r"^the image is linux/amd64 and this machine arm64: the contract test "
                                           r"runs it under qemu user-mode emulation, and `qemu-x86_64-static` is "
                                           r"not on PATH \(Debian: apt-get install qemu-user-static\)$"):
        find_emulator("amd64", machine="aarch64")
    with pytest.raises(SandboxError, match=r"^the image is linux/s390x: this amd64 machine can neither run nor "):
        find_emulator("s390x", machine="x86_64")


def test_start_runs_the_entrypoint_and_exec_in_through_the_emulator(shell_rootfs: Path) -> None:
    # The host's /bin/sh stands in for qemu: bound in as the emulator, it runs the image's argv (`-c …`).
    config = ImageConfig(entrypoint=("-c", 'echo "emulated: $0 $1"', "sh", "arg"), user="65532:65532")
    container = start(config, shell_rootfs, shell_rootfs.parent / "logs", emulator=os.path.realpath("/bin/sh"))
    assert container.process.wait(30) == 0, container.log_tail()
    argv = container.bwrap_argv
    assert ["--ro-bind", os.path.realpath("/bin/sh"), EMULATOR_PATH] in [argv[i:i + 3] for i in range(len(argv))]
    assert argv[argv.index("--") + 1:] == [EMULATOR_PATH, *config.argv] == container.argv
    assert container.image_argv == config.argv and container.command(["/x"]) == [EMULATOR_PATH, "/x"]
    assert container.stdout_path.read_text() == "emulated: sh arg\n"
