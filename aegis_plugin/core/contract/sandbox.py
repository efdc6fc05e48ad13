"""Run an unpacked image's entrypoint with bwrap, on a loopback-only network.

Network isolation. The driver itself moves into a fresh network namespace before it starts anything:
`reexec_in_private_netns()` runs `bwrap --dev-bind / / --unshare-net --die-with-parent -- <python> -m <cli>`
(bwrap brings `lo` up in the new namespace; everything else about the host stays visible, so paths, the
environment and the current directory are unchanged). The image's own bwrap is then started from inside that
namespace *without* `--unshare-net`, so the server and the driver share exactly one interface, `lo`: the
driver reaches the server on 127.0.0.1 and the server reaches nothing else.

The container. `start()` runs, as the image's user:

    bwrap --ro-bind ROOTFS / --proc /proc --dev /dev --tmpfs /tmp --unshare-pid --unshare-user
          --uid U --gid G --unshare-ipc --unshare-uts --die-with-parent --clearenv
          --setenv K V ... --chdir WORKDIR -- ENTRYPOINT CMD

When the driver is root it first drops to U:G (no supplementary groups) and bwrap runs unprivileged, creating
the user namespace itself: the server is then U:G on the host too, and file permissions in the rootfs (whose
owners `unpack` kept) apply to it as they would under a container runtime. Run as root, bwrap would map the
sandbox user onto host root, and the server could read files that a real runtime would deny it.

Inside the container. `exec_in()` uses `nsenter --target <server pid>` into the server's user, mount, pid,
uts, ipc and network namespaces, with its root and working directory, as U:G, with the container's
environment: the command runs inside the running container (it sees the server in its /proc, the same
read-only rootfs and tmpfs /tmp) rather than in a look-alike second sandbox. This needs root; everything else
also works for an unprivileged driver (when the kernel allows unprivileged user namespaces).

GPU access. `find_gpu()` finds what the NVIDIA container runtime would give a container: the device nodes
(/dev/nvidiactl, /dev/nvidia<N>, /dev/nvidia-uvm[-tools]) and the driver's user-space libraries (libcuda.so.1
and the libnvidia-*.so it loads), which must match the host's kernel module and so come from the host, never
from the image. `start(..., gpu=...)` adds

    --dev-bind /dev/nvidiactl /dev/nvidiactl ... --tmpfs /tmp/aegis-nvidia
    --ro-bind /usr/lib/x86_64-linux-gnu/libcuda.so.1 /tmp/aegis-nvidia/libcuda.so.1 ... --remount-ro /tmp/aegis-nvidia

and prepends /tmp/aegis-nvidia to the container's LD_LIBRARY_PATH. The libraries go below /tmp because the
rootfs is bound read-only before anything else, so bwrap can only create a directory inside a tmpfs it mounted.

Another architecture. An image built for another architecture than the machine's (linux/arm64 on an amd64
machine) runs under qemu user-mode emulation: `find_emulator()` finds the host's static emulator
(`qemu-aarch64-static`, Debian's qemu-user-static), `start(..., emulator=...)` binds it read-only at
/tmp/aegis-emulator and runs the entrypoint through it, and `exec_in()` runs commands through it too. The
image's own dynamic loader and libraries do the rest; nothing needs binfmt_misc on the host.

bwrap forwards no signals, so `stop()` sends SIGTERM to the entrypoint process itself (what `docker stop`
does to a container's main process), waits for bwrap to exit with the entrypoint's status, and sends SIGKILL
to bwrap (which takes the whole sandbox down) after a hard timeout.
"""
from __future__ import annotations

import os
import platform
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from .unpack import ImageConfig

from aegis_plugin.core.errors import AegisError

NVIDIA_LIB_DIR = "/tmp/aegis-nvidia"  # the host's NVIDIA driver libraries, inside the container
# The driver's libraries a CUDA program needs: libcuda.so.1, what it loads at run time (PTX JIT, NVVM, the GPU
# compiler of recent drivers) and NVML, as the NVIDIA container runtime mounts them for `compute,utility`.
NVIDIA_LIBRARY = re.compile(r"^(libcuda\.so\.1|libnvidia-(ptxjitcompiler|nvvm|gpucomp|ml)\.so\.[0-9.]+)$")
LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib64")  # where drivers install them when ldconfig is absent
EMULATOR_PATH = "/tmp/aegis-emulator"  # the host's static qemu, inside the container of a foreign image
EMULATORS = {"amd64": "qemu-x86_64-static", "arm64": "qemu-aarch64-static"}  # by OCI architecture
MACHINE_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}  # `uname -m` -> OCI architecture
NETNS_MARKER = "AEGIS_CONTRACT_NETNS"  # set in the driver's environment once it runs in its private netns
PORT_VARIABLE = "AEGIS_PORT"


class SandboxError(AegisError):
    """The sandbox could not be set up (missing tool, unusable rootfs, bwrap failure)."""


def find_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SandboxError(
            f"`{name}` was not found on PATH ({os.environ.get('PATH', '')}); the contract test needs it "
            f"(Debian: apt-get install {'bubblewrap' if name == 'bwrap' else 'util-linux'})"
        )
    return path


# --- the driver's own network namespace ---------------------------------------------------------------


def network_interfaces() -> list[str]:
    """The interfaces of this process's network namespace (from /proc/self/net/dev)."""
    with open("/proc/self/net/dev") as f:
        lines = f.read().splitlines()[2:]
    return sorted(line.split(":", 1)[0].strip() for line in lines if ":" in line)


def in_private_netns() -> bool:
    return os.environ.get(NETNS_MARKER) == "1"


def check_private_netns() -> None:
    """Inside the re-executed driver: the namespace must have nothing but loopback."""
    interfaces = network_interfaces()
    if interfaces != ["lo"]:
        raise SandboxError(
            f"{NETNS_MARKER}=1 but this network namespace has interfaces {interfaces}, not just lo; "
            f"unset {NETNS_MARKER} and let the driver create its own namespace"
        )


def _python_path() -> str:
    """sys.path as PYTHONPATH, so the re-executed interpreter imports exactly what this one does (PEX too)."""
    entries = [p for p in sys.path if p and os.path.exists(p)]
    return os.pathsep.join(dict.fromkeys(entries))


def reexec_in_private_netns(module: str, args: Sequence[str]) -> int:
    """Run `python -m module args` in a new network namespace with only `lo` (up); return its exit code.

    Used by the CLI when NETNS_MARKER is not set. SIGTERM/SIGINT to this process stop the child too.
    """
    bwrap = find_tool("bwrap")
    env = dict(os.environ, **{NETNS_MARKER: "1", "PYTHONPATH": _python_path()})
    argv = [bwrap, "--dev-bind", "/", "/", "--unshare-net", "--die-with-parent", "--chdir", os.getcwd(),
            "--", sys.executable, "-m", module, *args]
    child = subprocess.Popen(argv, env=env)
    received: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        # bwrap does not forward signals; killing it takes the driver (and its container) down with it.
        received.append(signum)
        child.kill()

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        raise SandboxError(f"interrupted by {signal.Signals(received[0]).name}; the container was killed")
    return code


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- users --------------------------------------------------------------------------------------------


def _lookup(rootfs: Path, database: str, value: str, column: int) -> Optional[list[str]]:
    """The first entry of the image's /etc/<database> whose `column` (0 = name, 2 = id) is `value`."""
    try:
        with open(rootfs / "etc" / database, encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 4 and fields[column] == value:
                    return fields
    except (FileNotFoundError, NotADirectoryError):
        pass
    return None


def resolve_user(user: str, rootfs: Path) -> tuple[int, int]:
    """The config's `User` ("uid", "uid:gid", "name", "name:group"; empty = root) as numeric ids.

    As container runtimes do, names are looked up in the image's /etc/passwd and /etc/group, and a user
    given without a group gets its passwd group (0 when it has no passwd entry).
    """
    if not user:
        return 0, 0
    name, _, group = user.partition(":")
    entry = _lookup(rootfs, "passwd", name, 2 if name.isdigit() else 0)
    if name.isdigit():
        uid = int(name)
    elif entry is None:
        raise SandboxError(f"image user {name!r} is not in the image's /etc/passwd")
    else:
        uid = int(entry[2])
    if not group:
        return uid, int(entry[3]) if entry else 0
    if group.isdigit():
        return uid, int(group)
    group_entry = _lookup(rootfs, "group", group, 0)
    if group_entry is None:
        raise SandboxError(f"image group {group!r} is not in the image's /etc/group")
    return uid, int(group_entry[2])


def unreachable(path: Path, uid: int, gid: int) -> Optional[str]:
    """Why uid:gid cannot reach `path` (an ancestor without search permission for it), or None."""
    for directory in [path, *path.parents]:
        st = directory.stat()
        if st.st_uid == uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid == gid:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            return f"no search permission on {directory} (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def _check_reachable(path: Path, uid: int, gid: int) -> None:
    """bwrap, running as uid:gid, must be able to reach the rootfs."""
    problem = unreachable(path, uid, gid)
    if problem:
        raise SandboxError(f"the rootfs {path} is not reachable by uid {uid}: {problem}; "
                           f"put the work directory somewhere world-searchable (--workdir)")


# --- processes ----------------------------------------------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                data = f.read()
        except OSError:
            continue
        ppid = int(data.rsplit(")", 1)[1].split()[1])  # the command name may contain spaces and ')'
        children.setdefault(ppid, []).append(int(entry))
    return children


def descendants(pid: int) -> list[int]:
    children = _children_map()
    result, pending = [], [pid]
    while pending:
        for child in sorted(children.get(pending.pop(0), [])):
            result.append(child)
            pending.append(child)
    return result


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0")[:-1]]
    except OSError:
        return []


def proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return {k: v.strip() for k, _, v in (line.partition(":") for line in f)}


def _id_map(pid: int, kind: str) -> list[tuple[int, int, int]]:
    with open(f"/proc/{pid}/{kind}_map") as f:
        return [tuple(int(x) for x in line.split()) for line in f if line.strip()]  # type: ignore[misc]


def _to_inside(host_id: int, id_map: list[tuple[int, int, int]]) -> Optional[int]:
    for inside, outside, count in id_map:
        if outside <= host_id < outside + count:
            return inside + host_id - outside
    return None


@dataclass(frozen=True)
class ProcessIds:
    """A process's real, effective, saved and filesystem ids, on the host and inside its user namespace."""

    host_uids: tuple[int, ...]
    host_gids: tuple[int, ...]
    uids: tuple[Optional[int], ...]
    gids: tuple[Optional[int], ...]
    ns_pid: list[int]


def process_ids(pid: int) -> ProcessIds:
    """Uid/Gid lines of /proc/<pid>/status (as the host sees them), translated through the process's maps."""
    status = proc_status(pid)
    host_uids = tuple(int(x) for x in status["Uid"].split())
    host_gids = tuple(int(x) for x in status["Gid"].split())
    uid_map, gid_map = _id_map(pid, "uid"), _id_map(pid, "gid")
    return ProcessIds(
        host_uids=host_uids,
        host_gids=host_gids,
        uids=tuple(_to_inside(u, uid_map) for u in host_uids),
        gids=tuple(_to_inside(g, gid_map) for g in host_gids),
        ns_pid=[int(x) for x in status.get("NSpid", str(pid)).split()],
    )


# --- the host's GPU -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuAccess:
    """The host's NVIDIA device nodes and driver libraries (host paths), to pass into a container."""

    devices: tuple[str, ...]
    libraries: tuple[str, ...]


def find_gpu(device_dir: str | os.PathLike[str] = "/dev",
             library_dirs: Optional[Sequence[str]] = None) -> Optional[GpuAccess]:
    """The host's NVIDIA GPU access, or None without nvidiactl, an nvidia<N> node, or libcuda.so.1.

    Libraries come from `ldconfig -p`, then `LIBRARY_DIRS`; given `library_dirs`, from those directories only.
    """
    device_dir = str(device_dir)
    try:
        names = os.listdir(device_dir)
    except OSError:
        return None
    gpus = sorted((n for n in names if re.fullmatch(r"nvidia\d+", n)), key=lambda n: int(n[6:]))
    if "nvidiactl" not in names or not gpus:
        return None
    extras = [n for n in ("nvidia-uvm", "nvidia-uvm-tools") if n in names]
    devices = tuple(os.path.join(device_dir, n) for n in ["nvidiactl", *gpus, *extras])
    libraries = _ldconfig_libraries() if library_dirs is None else {}
    for directory in LIBRARY_DIRS if library_dirs is None else library_dirs:
        try:
            found = sorted(n for n in os.listdir(directory) if NVIDIA_LIBRARY.match(n))
        except OSError:
            continue
        for name in found:
            libraries.setdefault(name, os.path.join(directory, name))
    if "libcuda.so.1" not in libraries:
        return None
    return GpuAccess(devices=devices, libraries=tuple(libraries[n] for n in sorted(libraries)))


def _ldconfig_libraries() -> dict[str, str]:
    """The NVIDIA libraries in the dynamic linker's cache (64-bit ones only), by name; empty without ldconfig."""
    ldconfig = next((p for p in (shutil.which("ldconfig"), "/sbin/ldconfig", "/usr/sbin/ldconfig")
                     if p and os.path.exists(p)), None)
    if ldconfig is None:
        return {}
    try:
        listing = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    libraries: dict[str, str] = {}
    for line in listing.splitlines():
        # "\tlibcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1"; 32-bit ones say "(libc6)".
        match = re.match(r"^\s*(\S+) \(([^)]*)\) => (\S+)$", line)
        if match and NVIDIA_LIBRARY.match(match[1]) and "64" in match[2]:
            libraries.setdefault(match[1], match[3])
    return libraries


def gpu_arguments(gpu: GpuAccess) -> list[str]:
    """bwrap arguments that give the container the GPU; they must follow `--dev /dev` and `--tmpfs /tmp`."""
    arguments = []
    for device in gpu.devices:
        arguments += ["--dev-bind", device, f"/dev/{os.path.basename(device)}"]
    arguments += ["--tmpfs", NVIDIA_LIB_DIR]
    for library in gpu.libraries:
        arguments += ["--ro-bind", library, f"{NVIDIA_LIB_DIR}/{os.path.basename(library)}"]
    return arguments + ["--remount-ro", NVIDIA_LIB_DIR]


# --- another architecture ----------------------------------------------------------------------------


def find_emulator(architecture: str, machine: Optional[str] = None) -> Optional[str]:
    """The host's qemu user-mode emulator for an image of OCI `architecture`; None when this machine runs it."""
    machine = machine or platform.machine()
    host = MACHINE_ARCHITECTURES.get(machine, machine)
    if not architecture or architecture == host:
        return None
    name = EMULATORS.get(architecture)
    if name is None:
        raise SandboxError(f"the image is linux/{architecture}: this {host} machine can neither run nor emulate it")
    path = shutil.which(name)
    if path is None:
        raise SandboxError(
            f"the image is linux/{architecture} and this machine {host}: the contract test runs it under qemu "
            f"user-mode emulation, and `{name}` is not on PATH (Debian: apt-get install qemu-user-static)"
        )
    return path


# --- the container ------------------------------------------------------------------------------------


@dataclass
class StopResult:
    exit_code: Optional[int]
    seconds: float
    killed: bool  # SIGKILL was needed after the hard timeout
    signalled_pid: Optional[int]


@dataclass
class Container:
    process: subprocess.Popen
    argv: list[str]  # what runs: the image's entrypoint + cmd, through the emulator when there is one
    env: dict[str, str]  # the container's environment
    uid: int
    gid: int
    port: int
    rootfs: Path
    working_dir: str
    stdout_path: Path
    stderr_path: Path
    bwrap_argv: list[str] = field(repr=False, default_factory=list)
    emulated: bool = False  # an image of another architecture, run through EMULATOR_PATH
    stopped: Optional[StopResult] = None
    _server_pid: Optional[int] = field(default=None, repr=False)

    @property
    def image_argv(self) -> list[str]:
        """The image's own entrypoint + cmd."""
        return self.argv[1:] if self.emulated else self.argv

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` (the image's binaries) as it runs in this container."""
        return [EMULATOR_PATH, *argv] if self.emulated else list(argv)

    @property
    def base_url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def running(self) -> bool:
        return self.process.poll() is None

    def server_pid(self) -> int:
        """The host pid of the entrypoint process (bwrap's pid 1 init is its parent)."""
        if self._server_pid is not None and cmdline(self._server_pid) == self.argv:
            return self._server_pid
        tree = [p for p in descendants(self.process.pid)]
        matches = [p for p in tree if cmdline(p) == self.argv]
        if not matches:
            # An entrypoint may re-exec itself; fall back to the deepest process that is not bwrap.
            matches = [p for p in tree if os.path.basename((cmdline(p) or [""])[0]) != "bwrap"][-1:]
        if not matches:
            raise SandboxError(f"no entrypoint process under bwrap (pid {self.process.pid}); is it running?")
        self._server_pid = matches[0]
        return self._server_pid

    def bwrap_error(self) -> Optional[str]:
        """bwrap's own complaint (`bwrap: ...` on stderr) when it exited without starting the entrypoint."""
        if self.running():
            return None
        try:
            lines = self.stderr_path.read_text(errors="replace").splitlines()
        except OSError:
            return None
        return next((line for line in lines if line.startswith("bwrap: ")), None)

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for label, path in (("stdout", self.stdout_path), ("stderr", self.stderr_path)):
            try:
                text = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                text = []
            if text:
                parts.append(f"--- container {label} (last {len(text)} lines) ---\n" + "\n".join(text))
        return "\n".join(parts) or "(the container wrote nothing to stdout or stderr)"


def start(
    config: ImageConfig,
    rootfs: Path,
    log_dir: Path,
    port: Optional[int] = None,
    extra_env: Optional[dict[str, str]] = None,
    gpu: Optional[GpuAccess] = None,
    emulator: Optional[str] = None,
) -> Container:
    """Start the image's entrypoint in `rootfs`; its stdout/stderr go to `log_dir/container.{stdout,stderr}`.

    With `gpu`, the container gets the host's NVIDIA devices and driver libraries; with `emulator` (the host
    path of a static qemu), it runs the entrypoint through it (see the module docstring).
    """
    bwrap = find_tool("bwrap")
    rootfs = Path(rootfs).resolve()
    argv = config.argv
    if not argv:
        raise SandboxError("the image config has neither Entrypoint nor Cmd")
    uid, gid = resolve_user(config.user, rootfs)
    port = port or free_loopback_port()
    env = dict(config.env_dict(), **{PORT_VARIABLE: str(port)}, **(extra_env or {}))
    working_dir = config.working_dir or "/"
    command = [bwrap, "--ro-bind", str(rootfs), "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    if gpu is not None:
        command += gpu_arguments(gpu)
        env["LD_LIBRARY_PATH"] = ":".join(p for p in (NVIDIA_LIB_DIR, env.get("LD_LIBRARY_PATH")) if p)
    if emulator is not None:
        command += ["--ro-bind", emulator, EMULATOR_PATH]
        argv = [EMULATOR_PATH, *argv]
    command += ["--unshare-pid", "--unshare-user", "--uid", str(uid), "--gid", str(gid),
                "--unshare-ipc", "--unshare-uts", "--die-with-parent", "--clearenv"]
    for key, value in env.items():
        command += ["--setenv", key, value]
    command += ["--chdir", working_dir, "--", *argv]

    drop: dict = {}
    if os.geteuid() == 0:
        _check_reachable(rootfs, uid, gid)
        drop = {"user": uid, "group": gid, "extra_groups": []}
    log_dir.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = log_dir / "container.stdout", log_dir / "container.stderr"
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                   env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, **drop)
    return Container(process=process, argv=list(argv), env=env, uid=uid, gid=gid, port=port, rootfs=rootfs,
                     working_dir=working_dir, stdout_path=stdout_path, stderr_path=stderr_path,
                     bwrap_argv=command, emulated=emulator is not None)


def exec_in(container: Container, argv: Sequence[str], timeout: float = 30.0) -> subprocess.CompletedProcess:
    """Run `argv` inside the running container (its namespaces, root, cwd, user and environment), through
    its emulator when it has one.

    Needs root: run unprivileged, bwrap nests the container's user namespace inside one of its own, which owns
    the mount/pid/ipc/uts namespaces, and nsenter cannot join those from the inner user namespace.
    """
    nsenter = find_tool("nsenter")
    if os.geteuid() != 0:
        raise SandboxError("running a command inside the container (nsenter) needs the driver to run as root")
    command = [nsenter, "--target", str(container.server_pid()),
               "--user", "--mount", "--pid", "--uts", "--ipc", "--net", "--root", "--wd",
               "--setuid", str(container.uid), "--setgid", str(container.gid), "--", *container.command(argv)]
    return subprocess.run(command, env=container.env, stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=timeout, check=False)


def stop(container: Container, hard_timeout: float = 15.0) -> StopResult:
    """SIGTERM to the entrypoint process; SIGKILL to bwrap (and so the sandbox) after `hard_timeout` s."""
    if container.stopped is not None:
        return container.stopped
    pid: Optional[int] = None
    started = time.monotonic()
    if container.running():
        try:
            pid = container.server_pid()
            os.kill(pid, signal.SIGTERM)
        except (SandboxError, ProcessLookupError):
            pid = None
    killed = False
    try:
        container.process.wait(timeout=hard_timeout)
    except subprocess.TimeoutExpired:
        killed = True
        container.process.kill()
        container.process.wait()
    seconds = time.monotonic() - started
    container.stopped = StopResult(exit_code=container.process.returncode, seconds=seconds, killed=killed,
                                   signalled_pid=pid)
    return container.stopped
