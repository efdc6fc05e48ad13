"""Wheel files for tests: real zip archives with a dist-info (METADATA, WHEEL, RECORD)."""
from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path


def make_wheel(directory: Path, name: str, version: str, files: dict[str, bytes], requires: tuple[str, ...] = (),
               tag: str = "py3-none-any") -> Path:
    """`<name>-<version>-<tag>.whl` in `directory`, holding `files` (paths inside the wheel) and a dist-info
    whose METADATA lists `requires` as `Requires-Dist` and whose RECORD hashes every file."""
    dist_info = f"{name}-{version}.dist-info"
    metadata = "".join([f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
                        *(f"Requires-Dist: {r}\n" for r in requires)])
    members = {**files, f"{dist_info}/METADATA": metadata.encode(),
               f"{dist_info}/WHEEL": f"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: {tag}\n".encode()}
    record = "".join(
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
        for path, data in members.items()
    ) + f"{dist_info}/RECORD,,\n"
    path = directory / f"{name}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in {**members, f"{dist_info}/RECORD": record.encode()}.items():
            archive.writestr(member, data)
    return path
