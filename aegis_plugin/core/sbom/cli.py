"""Write and check the SBOMs of an image, as one command:

    python -m aegis_plugin.core.sbom.cli --inventory inventory.json --out DIR \
        [--layers L1 L2 ... --site-packages /app/site-packages --allow GLOB ...]

writes DIR/sbom.cdx.json (CycloneDX 1.6), DIR/sbom.spdx.json (SPDX 2.3) and DIR/sbom.spdx3.json (SPDX 3.0.1
JSON-LD), after validating the first two (the CycloneDX JSON schema through cyclonedx-python-lib, spdx-tools
for SPDX 2.3; no SPDX 3 validator ships in this resolve: the SBOM test runs the SPDX project's checker on it).
With `--layers` (the image's layer blobs or tables of contents, lowest first) it also measures completeness:
every regular file of the image must belong to a component of the inventory (or match an `--allow` glob);
the counts go to DIR/sbom-completeness.json.

Exit status 0 when everything is written; 2 with one `aegis: ...` line on stderr for a malformed inventory,
an invalid document or unattributed files, and then nothing is written.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from typing import Optional, Sequence

from aegis_plugin.core.errors import AegisError
from aegis_plugin.core.sbom import completeness
from aegis_plugin.core.sbom import inventory as inventory_module
from aegis_plugin.core.sbom.common import app_name
from aegis_plugin.core.sbom.cyclonedx import build_cyclonedx, validate_cyclonedx
from aegis_plugin.core.sbom.spdx import build_spdx, validate_spdx
from aegis_plugin.core.sbom.spdx3 import build_spdx3

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


def _write(out: str, cdx: bytes, spdx: bytes, spdx3: bytes, report: Optional[completeness.Report]) -> None:
    """Validates and writes all documents, or fails leaving ``out`` untouched."""
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".sbom-", dir=parent)
    try:
        with open(os.path.join(staging, CYCLONEDX_FILE), "wb") as f:
            f.write(cdx)
        with open(os.path.join(staging, SPDX_FILE), "wb") as f:
            f.write(spdx)
        with open(os.path.join(staging, SPDX3_FILE), "wb") as f:
            f.write(spdx3)
        if report is not None:
            with open(os.path.join(staging, COMPLETENESS_FILE), "w", encoding="utf-8") as f:
                f.write(report.to_json())
        problems = [f"{CYCLONEDX_FILE}: {m}" for m in validate_cyclonedx(cdx)]
        problems += [f"{SPDX_FILE}: {m}" for m in validate_spdx(os.path.join(staging, SPDX_FILE))]
        if problems:
            more = f" (and {len(problems) - 1} more: {'; '.join(problems[1:4])})" if len(problems) > 1 else ""
            raise _Failure(f"the SBOM is invalid: {problems[0]}{more}")
        os.makedirs(out, exist_ok=True)
        for name in sorted(os.listdir(staging)):
            os.replace(os.path.join(staging, name), os.path.join(out, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n\n")[0])
    parser.add_argument("--inventory", required=True, help="the inventory JSON (see inventory.py)")
    parser.add_argument("--out", required=True, help=f"directory for {CYCLONEDX_FILE}, {SPDX_FILE} and {SPDX3_FILE}")
    parser.add_argument("--layers", nargs="*", default=None, help="the image's layers, lowest first: blobs, or the toc.json their layer steps wrote")
    parser.add_argument("--site-packages", default="/app/site-packages",
                        help="the image directory holding the Python distributions' .dist-info")
    parser.add_argument("--allow", action="append", default=[],
                        help="a glob of image files knowingly left out of the SBOM (repeatable)")
    args = parser.parse_args(argv)
    try:
        inv = inventory_module.load(args.inventory)
        report = None
        if args.layers is not None:
            report = completeness_report(inv, args.layers, args.site_packages, args.allow)
            try:
                completeness.check(report)
            except completeness.CompletenessError as e:
                raise _Failure(f"{e}: give them to a component (a package, the model or the app), or allow them "
                               f"knowingly with `[aegis-sbom].allow`") from None
        _write(args.out, build_cyclonedx(inv), build_spdx(inv), build_spdx3(inv), report)
    except AegisError as e:
        print(f"aegis: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
