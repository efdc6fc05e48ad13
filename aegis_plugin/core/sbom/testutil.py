"""For the tests: a small, realistic inventory (the demo model's image with a few of its packages), and layers."""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import random
import tarfile
from pathlib import Path
from typing import Any, Dict, List

INTENDED_USE = """\
- Demonstrating and testing Aegis end to end: packaging, SBOM, scanning, signing, and the image's
  contract test (`server/examples.json`), with a model that has real weights and a real tokenizer.
- Teaching material for how a tabular-plus-text model is trained reproducibly and served from a small
  runtime (no ML framework in the image).
"""

OUT_OF_SCOPE = """\
- Any real payment, credit, account or customer decision. The model has never seen a real transaction.
- Judging individuals, or any use where a score could be read as a statement about a person.
"""

EVALUATION = """\
On the 4,000 held-out test transactions (222 frauds, 5.55%):

| metric | value |
|---|---|
| ROC AUC | 0.862 |
| average precision (PR AUC) | 0.377 |
| log loss | 0.1575 |

The last line is the best ranking any model of these inputs can reach.
"""

LIMITATIONS = """\
- Synthetic, stationary data: real fraud shifts as fraudsters adapt.
- The merchant vocabulary is closed (60 words, all from the generator). New brands, categories or cities
  contribute nothing.
"""

ETHICS = """\
The model is trained on invented transactions and no personal data. Country mismatch and city tokens can
act as proxies for nationality or ethnicity in a real system.
"""


def _hex(seed: str, n: int = 64) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:n]


def _deb(name: str, version: str, source: str, source_version: str, licenses: list, files: list) -> Dict[str, Any]:
    return {
        "name": name, "version": version, "architecture": "amd64", "source": source,
        "source_version": source_version, "sha256": _hex(f"deb:{name}"),
        "maintainer": f"{source} Maintainers <{source}@lists.debian.org>", "licenses": licenses,
        "copyright": [f"2001-2024 The {source} authors"], "files": files,
        "sha512": hashlib.sha512(f"deb:{name}".encode()).hexdigest(),
    }


def _dist(name: str, version: str, license: Any, files: list) -> Dict[str, Any]:
    tag = "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64"
    return {
        "name": name, "version": version, "wheel": f"{name.replace('-', '_')}-{version}-{tag}.whl",
        "hashes": [f"sha256:{_hex(f'whl:{name}')}"], "license": license,
        "authors": [f"{name} author <a@{name}.invalid>"],
        "maintainers": [], "copyright": [f"Copyright (c) 2024 {name} author"], "files": files,
        "wheel_sha256": _hex(f"whl:{name}"), "wheel_sha512": hashlib.sha512(f"whl:{name}".encode()).hexdigest(),
    }


def _file(path: str, **extra: Any) -> Dict[str, Any]:
    return {"path": path, "sha256": _hex(f"sha256:{path}"), "sha1": _hex(f"sha1:{path}", 40), **extra}


def write_layer(path: Path, entries: List[tuple], compress: bool = True) -> str:
    """entries: ("file", name, data) | ("dir", name) | ("sym", name, target) | ("link", name, target)
    | ("chr", name); names as in real layers (relative, no leading slash)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, *rest in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            data = None
            if kind == "file":
                data = rest[0]
                info.size = len(data)
                info.mode = 0o644
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, rest[0]
            elif kind == "link":
                info.type, info.linkname = tarfile.LNKTYPE, rest[0]
            elif kind == "chr":
                info.type = tarfile.CHRTYPE
            else:
                raise AssertionError(kind)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    raw = buf.getvalue()
    path.write_bytes(gzip.compress(raw, mtime=0) if compress else raw)
    return str(path)


def inventory() -> Dict[str, Any]:
    """A fresh copy (tests may change it)."""
    return copy.deepcopy(_INVENTORY)


def shuffled(data: Dict[str, Any], seed: int = 7) -> Dict[str, Any]:
    """The same inventory with every list (and every object's keys) in another order."""
    rng = random.Random(seed)

    def shuffle(value: Any) -> Any:
        if isinstance(value, dict):
            items = [(k, shuffle(v)) for k, v in value.items()]
            rng.shuffle(items)
            return dict(items)
        if isinstance(value, list):
            items = [shuffle(v) for v in value]
            rng.shuffle(items)
            return items
        return value

    return shuffle(copy.deepcopy(data))


_INVENTORY: Dict[str, Any] = {
    "image": {
        "name": "aegis/fraud-detector",
        "version": "1.0.0",
        "created": 1764000000,
        "git_sha": "0123456789abcdef0123456789abcdef01234567",
        "source_url": "https://example.invalid/aegis.git",
        "architecture": "amd64",
        "os": "linux",
        "creator": {"name": "Example ML Platform Team", "email": "ml-platform@example.invalid",
                    "url": "https://example.invalid/ml-platform"},
    },
    "debian": [
        _deb("libc6", "2.36-9+deb12u14", "glibc", "2.36-9+deb12u14",
             ["GPL-2+", "LGPL-2.1+", "public-domain"], ["/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6"]),
        _deb("libcrypt1", "1:4.4.33-2", "libxcrypt", "1:4.4.33-2",
             ["LGPL-2.1+", "BSD-3-clause", "public-domain"], ["/lib/x86_64-linux-gnu/libcrypt.so.1"]),
        _deb("libbz2-1.0", "1.0.8-5+b1", "bzip2", "1.0.8-5",
             ["BSD-variant", "GPL-2"], ["/lib/x86_64-linux-gnu/libbz2.so.1.0"]),
        _deb("libgcc-s1", "12.2.0-14+deb12u1", "gcc-12", "12.2.0-14+deb12u1",
             ["GPL-3+ with GCC-3.1 exception"], ["/lib/x86_64-linux-gnu/libgcc_s.so.1"]),
        _deb("libexpat1", "2.5.0-1+deb12u5", "expat", "2.5.0-1+deb12u5",
             ["Expat"], ["/usr/lib/x86_64-linux-gnu/libexpat.so.1"]),
        _deb("media-types", "10.0.0", "media-types", "10.0.0", [], ["/etc/mime.types"]),
    ],
    "python": [
        _dist("numpy", "2.4.6", "BSD-3-Clause AND 0BSD AND MIT AND Zlib AND CC0-1.0",
              ["/app/site-packages/numpy/__init__.py", "/app/site-packages/numpy-2.4.6.dist-info/METADATA"]),
        _dist("safetensors", "0.6.2", "Apache-2.0",
              ["/app/site-packages/safetensors/__init__.py"]),
        _dist("tokenizers", "0.22.1", "apache-2.0",
              ["/app/site-packages/tokenizers/__init__.py"]),
        _dist("filelock", "4.3.1", "The Unlicense (Unlicense)", ["/app/site-packages/filelock/__init__.py"]),
        _dist("huggingface-hub", "0.36.0", None, ["/app/site-packages/huggingface_hub/__init__.py"]),
    ],
    "model": {
        "model_id": "fraud-detector",
        "version": "1.0.0",
        "framework": "numpy",
        "framework_version": "2.4.6",
        "accelerator": "cpu",
        "files": [
            _file("/app/model/weights.safetensors", size=3224, role="weights"),
            _file("/app/model/tokenizer.json", size=2291, role="tokenizer"),
            _file("/app/model/model_card.md", size=7431, role="model_card"),
        ],
        "card": {
            "sections": {
                "Model details": "- model_id: fraud-detector\n- license: Apache-2.0\n",
                "Intended use": INTENDED_USE,
                "Out-of-scope use": OUT_OF_SCOPE,
                "Training data": "20,000 synthetic transactions generated by `train.py`\nfrom a seeded generator.\n",
                "Evaluation metrics": EVALUATION,
                "Limitations": LIMITATIONS,
                "Ethical considerations": ETHICS,
                "License": "Apache-2.0, the same as the Aegis code.",
                "Owner": "Aegis maintainers, through the project's issue tracker.",
            },
            "fields": {
                "model_id": "fraud-detector",
                "version": "1.0.0",
                "owner": "Aegis maintainers",
                "license": "Apache-2.0",
                "framework": "numpy",
                "task": "binary classification",
                "architecture": "multilayer perceptron, 13 inputs → 16 ReLU units → 1 sigmoid output",
            },
        },
    },
    "app": {
        "files": [
            _file("/app/server/handler.py"),
            _file("/app/server/healthcheck.py"),
            _file("/app/aegis_runtime/server.py"),
            _file("/app/manifest.yaml"),
            _file("/app/requirements.lock"),
        ],
    },
}
