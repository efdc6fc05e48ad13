"""The interpreter an image runs its handler on: what its wheels and markers are chosen for.

Images run Debian 12's CPython 3.11 (3rdparty/debian: python3.11 3.11.2, glibc 2.36) on linux/amd64 or
linux/arm64; the build machine's own Python, architecture and libc never decide what ships.
"""
from __future__ import annotations

from dataclasses import dataclass

from aegis_plugin.core.errors import AegisError

# OCI platform -> the machine name Linux (and PEP 508's `platform_machine`) gives it.
MACHINES = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}


class InterpreterError(AegisError, ValueError):
    pass


@dataclass(frozen=True)
class Interpreter:
    platform: str  # an OCI platform, e.g. "linux/amd64"
    version: tuple[int, int, int] = (3, 11, 2)
    glibc: tuple[int, int] = (2, 36)

    def __post_init__(self) -> None:
        if self.platform not in MACHINES:
            raise InterpreterError(f"unsupported platform {self.platform!r} (supported: {', '.join(MACHINES)})")

    @property
    def machine(self) -> str:
        return MACHINES[self.platform]

    def marker_environment(self) -> dict[str, str]:
        """PEP 508's environment (without `extra`)."""
        full = ".".join(map(str, self.version))
        return {
            "python_version": f"{self.version[0]}.{self.version[1]}",
            "python_full_version": full,
            "implementation_version": full,
            "implementation_name": "cpython",
            "platform_python_implementation": "CPython",
            "os_name": "posix",
            "sys_platform": "linux",
            "platform_system": "Linux",
            "platform_machine": self.machine,
            "platform_release": "",
            "platform_version": "",
        }

    def wheel_tags(self) -> list[str]:
        """Every `python-abi-platform` tag a wheel for this interpreter may carry, the most specific first (the
        order an installer prefers them in when several files of one release fit)."""
        major, minor = self.version[0], self.version[1]
        cp = f"cp{major}{minor}"
        platforms = []
        for glibc_minor in range(self.glibc[1], 4, -1):
            platforms.append(f"manylinux_{self.glibc[0]}_{glibc_minor}_{self.machine}")
            legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}.get(glibc_minor)
            if legacy:
                platforms.append(f"{legacy}_{self.machine}")
        platforms.append(f"linux_{self.machine}")
        tags = [f"{cp}-{cp}-{p}" for p in platforms]
        tags += [f"{cp}-abi3-{p}" for p in platforms]
        tags += [f"{cp}-none-{p}" for p in platforms]
        tags += [f"cp{major}{m}-abi3-{p}" for m in range(minor - 1, 1, -1) for p in platforms]
        generic = [f"py{major}{minor}", f"py{major}", *(f"py{major}{m}" for m in range(minor - 1, -1, -1))]
        tags += [f"{py}-none-{p}" for py in generic for p in platforms]
        tags += [f"{cp}-none-any"] + [f"{py}-none-any" for py in generic]
        return tags
