"""Hash-pinned requirement locks (`name==version \\ --hash=sha256:...` blocks, as `uv pip compile` writes them).

The image carries the subset of the runtime lock that it actually installs, so `/app/requirements.lock`
reproduces exactly the image's third-party code, with the hashes that were verified when it was resolved.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from aegis_plugin.core.errors import AegisError

_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(?P<version>[^\s;\\]+)")


def canonical_name(name: str) -> str:
    """PEP 503 normalisation: `Foo_Bar` and `foo-bar` are one distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class LockedRequirement:
    name: str  # canonical
    version: str
    text: str  # the whole block: pin, markers and hashes, without `# via` comments

    @property
    def hashes(self) -> tuple[str, ...]:
        return tuple(re.findall(r"--hash=(sha256:[0-9a-f]{64})", self.text))

    @property
    def marker(self) -> str:
        """The environment marker of the pin (`; sys_platform == 'win32'`), "" when it applies everywhere."""
        first_line = self.text.split("\n", 1)[0].rstrip(" \\")
        return first_line.partition(";")[2].strip()


class RequirementsLockError(AegisError, ValueError):
    pass


def parse(text: str) -> list[LockedRequirement]:
    """Parses the lock's requirement blocks; a pin without hashes is an error (nothing unverified ships)."""
    blocks: list[list[str]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[0].isspace() and blocks:
            blocks[-1].append(stripped)
        else:
            blocks.append([stripped])
    result = []
    for block in blocks:
        match = _PIN.match(block[0])
        if not match:
            raise RequirementsLockError(f"not a pinned requirement: {block[0]!r}")
        requirement = LockedRequirement(
            canonical_name(match.group("name")), match.group("version"), " \\\n    ".join(
                part.rstrip(" \\") for part in block
            )
        )
        if not requirement.hashes:
            raise RequirementsLockError(f"{requirement.name}=={requirement.version} is not pinned by hash")
        result.append(requirement)
    return result


def subset(requirements: list[LockedRequirement], installed: dict[str, str], lock_name: str) -> bytes:
    """The lock text for exactly the `installed` distributions (canonical name -> version)."""
    by_name: dict[str, list[LockedRequirement]] = {}
    for requirement in requirements:
        by_name.setdefault(requirement.name, []).append(requirement)
    blocks = []
    for name in sorted(installed):
        matching = [r for r in by_name.get(name, []) if r.version == installed[name]]
        if not matching:
            raise RequirementsLockError(f"{name}=={installed[name]} is installed but not pinned in {lock_name}")
        blocks.append(matching[0].text)
    header = f"# The exact third-party distributions in this image, pinned by hash (a subset of {lock_name}).\n"
    return (header + "\n".join(blocks) + "\n").encode()
