"""Write and check the SBOMs of an image:

    python -m aegis_plugin.core.sbom.cli --inventory inventory.json --out DIR \
        [--layers L1 L2 ... --site-packages /app/site-packages --allow GLOB ...]

writes DIR/sbom.cdx.json (CycloneDX 1.7) and DIR/sbom.spdx.json (SPDX 2.3), after validating them (the
CycloneDX JSON schema through cyclonedx-python-lib, spdx-tools for SPDX 2.3). With `--layers` (the image's
layer blobs or tables of contents, lowest first) it also measures completeness: every regular file of the
image must belong to a component of the inventory (or match an `--allow` glob); the counts go to
DIR/sbom-completeness.json.

    python -m aegis_plugin.core.sbom.cli --inventory inventory.json --out DIR --image-manifest BLOB \
        --app-layer BLOB [--model-artifact BLOB]

writes DIR/sbom.spdx3.json (SPDX 3.0.1 JSON-LD) of the finished image, naming what its components are
deployed as: its manifest, the app's layer and the model's ModelPack artifact manifest (files of its OCI
layout, each named by its sha256). No SPDX 3 validator ships in this resolve: the SBOM test runs the SPDX
project's checker on it.

Exit status 0 when everything is written; 2 with one `aegis: ...` line on stderr for a malformed inventory,
an invalid document or unattributed files, and then nothing is written.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
from typing import Callable, List, Mapping, Optional, Sequence, Tuple

from aegis_plugin.core.errors import AegisError
from aegis_plugin.core.sbom import completeness
from aegis_plugin.core.sbom import inventory as inventory_module
from aegis_plugin.core.sbom.common import app_name
from aegis_plugin.core.sbom.forked import Forked
from aegis_plugin.core.sbom.spdx import build_spdx, validate_spdx
from aegis_plugin.core.sbom.spdx3 import Deployable, Deployables, build_spdx3

MODULE = "aegis_plugin.core.sbom.cli"
CYCLONEDX_FILE = "sbom.cdx.json"
SPDX_FILE = "sbom.spdx.json"
SPDX3_FILE = "sbom.spdx3.json"
COMPLETENESS_FILE = "sbom-completeness.json"


class _Failure(AegisError):
    pass


def completeness_report(
    inv: inventory_module.Inventory, layers: Sequence[str], site_packages: str, allow: Sequence[str]
) -> completeness.Report:
    """Attribute every file of ``layers``: Debian and Python files through the image's own dpkg records and
    RECORD files (what a scanner reads), the model's and the app's files through the inventory."""
    components = [
        {"component": f"model:{inv.model.model_id}", "files": [f.path for f in inv.model.files]},
        {"component": f"app:{app_name(inv)}", "files": [f.path for f in inv.app.files]},
    ]
    return completeness.attribute(list(layers), site_packages, components, list(allow))


def _write(out: str, documents: Mapping[str, bytes], report: Optional[completeness.Report] = None,
           check: Callable[[str], List[str]] = lambda staging: []) -> None:
    """Writes ``documents`` (file name -> bytes) and ``report``, or fails leaving ``out`` untouched when
    ``check`` (given the directory they were staged in) finds problems."""
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".sbom-", dir=parent)
    try:
        for name, content in documents.items():
            with open(os.path.join(staging, name), "wb") as f:
                f.write(content)
        if report is not None:
            with open(os.path.join(staging, COMPLETENESS_FILE), "w", encoding="utf-8") as f:
                f.write(report.to_json())
        problems = check(staging)
        if problems:
            more = f" (and {len(problems) - 1} more: {'; '.join(problems[1:4])})" if len(problems) > 1 else ""
            raise _Failure(f"the SBOM is invalid: {problems[0]}{more}")
        os.makedirs(out, exist_ok=True)
        for name in sorted(os.listdir(staging)):
            os.replace(os.path.join(staging, name), os.path.join(out, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _cyclonedx(inv: inventory_module.Inventory) -> Tuple[bytes, List[str]]:
    """The CycloneDX document and what its JSON schema (through cyclonedx-python-lib) finds wrong with it.
    Imported here: the SPDX 3 step, which runs on every edit, has no use for cyclonedx-python-lib's start-up."""
    from aegis_plugin.core.sbom.cyclonedx import build_cyclonedx, validate_cyclonedx

    document = build_cyclonedx(inv)
    return document, [f"{CYCLONEDX_FILE}: {m}" for m in validate_cyclonedx(document)]


def _validate_spdx(document: bytes) -> List[str]:
    """What spdx-tools finds wrong with the SPDX 2.3 document (it parses files only)."""
    with tempfile.TemporaryDirectory(prefix=".spdx-") as directory:
        path = os.path.join(directory, SPDX_FILE)
        with open(path, "wb") as f:
            f.write(document)
        return [f"{SPDX_FILE}: {m}" for m in validate_spdx(path)]


def _blob(path: str, what: str) -> Tuple[str, bytes]:
    """(digest, content) of a file of an OCI layout's blobs/sha256/, which is named by its own sha256."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise _Failure(f"cannot read {what} {path}: {e.strerror or e}") from None
    sha256 = hashlib.sha256(data).hexdigest()
    if os.path.basename(path) != sha256:
        raise _Failure(f"{what} {path} is not the blob its name says (its sha256 is {sha256})")
    return f"sha256:{sha256}", data


def _manifest(path: str, what: str) -> Tuple[Deployable, dict]:
    digest, data = _blob(path, what)
    try:
        manifest = json.loads(data)
        deployable = Deployable(digest, hashlib.sha512(data).hexdigest(), str(manifest["mediaType"]))
    except (ValueError, KeyError, TypeError):
        raise _Failure(f"{what} {path} is not a JSON manifest with a mediaType") from None
    return deployable, manifest


def deployables(image_manifest: str, app_layer: str, model_artifact: Optional[str]) -> Deployables:
    """What the finished image's components are deployed as, from its layout's blobs: the image's manifest,
    the app's layer (its media type as the manifest lists it) and the model's ModelPack artifact manifest."""
    image, manifest = _manifest(image_manifest, "the image manifest")
    digest, data = _blob(app_layer, "the app layer")
    media_types = {layer.get("digest"): layer.get("mediaType") for layer in manifest.get("layers", [])}
    if digest not in media_types:
        raise _Failure(f"the app layer {app_layer} is not a layer of the image manifest {image_manifest}")
    app = Deployable(digest, hashlib.sha512(data).hexdigest(), str(media_types[digest]))
    model = _manifest(model_artifact, "the ModelPack artifact manifest")[0] if model_artifact else None
    return Deployables(image=image, app=app, model=model)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n\n")[0])
    parser.add_argument("--inventory", required=True, help="the inventory JSON (see inventory.py)")
    parser.add_argument("--out", required=True, help=f"directory for {CYCLONEDX_FILE} and {SPDX_FILE}, or {SPDX3_FILE}")
    parser.add_argument("--image-manifest", default=None,
                        help=f"the finished image's manifest blob: write only {SPDX3_FILE}, which names it")
    parser.add_argument("--app-layer", default=None, help="with --image-manifest: the app's layer blob")
    parser.add_argument("--model-artifact", default=None,
                        help="with --image-manifest: the manifest blob of the model's ModelPack artifact, if any")
    parser.add_argument("--layers", nargs="*", default=None, help="the image's layers, lowest first: blobs, or the toc.json their layer steps wrote")
    parser.add_argument("--site-packages", default="/app/site-packages",
                        help="the image directory holding the Python distributions' .dist-info")
    parser.add_argument("--allow", action="append", default=[],
                        help="a glob of image files knowingly left out of the SBOM (repeatable)")
    args = parser.parse_args(argv)
    try:
        inv = inventory_module.load(args.inventory)
        if args.image_manifest is not None:
            if args.app_layer is None:
                parser.error("--image-manifest needs --app-layer")
            finished = deployables(args.image_manifest, args.app_layer, args.model_artifact)
            _write(args.out, {SPDX3_FILE: build_spdx3(inv, finished)})
            return 0
        # CycloneDX on one core, completeness and SPDX on the other (forked.py says why).
        cyclonedx = Forked(functools.partial(_cyclonedx, inv))
        try:
            report = None
            if args.layers is not None:
                report = completeness_report(inv, args.layers, args.site_packages, args.allow)
                try:
                    completeness.check(report)
                except completeness.CompletenessError as e:
                    raise _Failure(f"{e}: give them to a component (a package, the model or the app), or allow "
                                   f"them knowingly with `[aegis-sbom].allow`") from None
            spdx = build_spdx(inv)
            spdx_problems = _validate_spdx(spdx)
            document, problems = cyclonedx.result()
        except BaseException:
            cyclonedx.cancel()
            raise
        _write(args.out, {CYCLONEDX_FILE: document, SPDX_FILE: spdx}, report, lambda staging: problems + spdx_problems)
    except AegisError as e:
        print(f"aegis: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
