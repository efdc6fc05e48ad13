"""Write and check both SBOMs of an image, as one command:

    python -m aegis_plugin.core.sbom.cli --inventory inventory.json --out DIR

writes DIR/sbom.cdx.json (CycloneDX 1.6) and DIR/sbom.spdx.json (SPDX 2.3), then validates them (the
CycloneDX JSON schema through cyclonedx-python-lib, spdx-tools for SPDX). Exit status 0 when both are written
and valid; 2 with one `aegis: ...` line on stderr for a malformed inventory or an invalid document.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from aegis_plugin.core.sbom import inventory as inventory_module
from aegis_plugin.core.sbom.cyclonedx import build_cyclonedx, validate_cyclonedx
from aegis_plugin.core.sbom.spdx import build_spdx, validate_spdx

MODULE = "aegis_plugin.core.sbom.cli"
CYCLONEDX_FILE = "sbom.cdx.json"
SPDX_FILE = "sbom.spdx.json"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n\n")[0])
    parser.add_argument("--inventory", required=True, help="the inventory JSON (see inventory.py)")
    parser.add_argument("--out", required=True, help=f"directory for {CYCLONEDX_FILE} and {SPDX_FILE}")
    args = parser.parse_args(argv)
    try:
        inv = inventory_module.load(args.inventory)
    except inventory_module.InventoryError as e:
        print(f"aegis: {e}", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    cdx_path, spdx_path = os.path.join(args.out, CYCLONEDX_FILE), os.path.join(args.out, SPDX_FILE)
    cdx = build_cyclonedx(inv)
    with open(cdx_path, "wb") as f:
        f.write(cdx)
    with open(spdx_path, "wb") as f:
        f.write(build_spdx(inv))
    problems = [f"{CYCLONEDX_FILE}: {m}" for m in validate_cyclonedx(cdx)]
    problems += [f"{SPDX_FILE}: {m}" for m in validate_spdx(spdx_path)]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        print(f"aegis: the SBOM is invalid: {problems[0]}{more}", file=sys.stderr)
        for problem in problems[1:20]:
            print(f"  {problem}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
