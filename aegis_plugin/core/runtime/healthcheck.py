#!/usr/bin/env python3
"""Exits 0 when the model server is ready, 1 otherwise: for a container HEALTHCHECK or an exec probe."""
import os
import sys
import urllib.request

URL = f"http://127.0.0.1:{os.environ.get('AEGIS_PORT', '8080')}/v2/health/ready"


def main() -> int:
    try:
        with urllib.request.urlopen(URL, timeout=float(os.environ.get("AEGIS_HEALTHCHECK_TIMEOUT", "3"))) as r:
            return 0 if r.status == 200 else 1
    except Exception as e:  # connection refused, timeout, 503: all mean "not ready"
        print(f"not ready: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
