"""Digests of a distribution file (a .deb or a wheel) in one read: sha256, which locks pin, and sha512, which
BSI TR-03183-2 asks an SBOM to give for each component's distribution file."""
from __future__ import annotations

import hashlib
import os


def file_digests(path: str | os.PathLike[str]) -> tuple[str, str]:
    """The file's sha256 and sha512, as hex."""
    sha256, sha512 = hashlib.sha256(), hashlib.sha512()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha256.update(block)
            sha512.update(block)
    return sha256.hexdigest(), sha512.hexdigest()
