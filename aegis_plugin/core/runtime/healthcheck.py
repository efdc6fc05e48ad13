#!/usr/bin/env python3
"""Exits 0 when the model server is ready, 1 otherwise: for a container HEALTHCHECK or an exec probe.

    python3.11 /app/server/healthcheck.py

Asks `GET /v2/health/ready` on 127.0.0.1:$AEGIS_PORT (default 8080) and waits at most
$AEGIS_HEALTHCHECK_TIMEOUT seconds (default 2) in all. Anything but a 200 prints one line saying why on stderr.
Standalone on purpose (the image copies it to /app/server/ alone): standard library only, no imports of the
rest of the runtime. It talks to the socket directly, so HTTP(S)_PROXY settings never reroute the probe.
"""
from __future__ import annotations

import http.client
import os
import socket
import sys
import time

PATH = "/v2/health/ready"


def check(environ=os.environ) -> str:
    """Empty when ready, else why not."""
    try:
        port = int(environ.get("AEGIS_PORT", "8080"))
        timeout = float(environ.get("AEGIS_HEALTHCHECK_TIMEOUT", "2"))
        if not 0 < port < 65536 or not 0 < timeout <= 3600:
            raise ValueError
    except ValueError:
        return (
            f"invalid AEGIS_PORT={environ.get('AEGIS_PORT')!r} or "
            f"AEGIS_HEALTHCHECK_TIMEOUT={environ.get('AEGIS_HEALTHCHECK_TIMEOUT')!r}"
        )
    deadline = time.monotonic() + timeout
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", PATH, headers={"Connection": "close"})
        # The socket timeout bounds each read; the deadline bounds them all.
        connection.sock.settimeout(max(deadline - time.monotonic(), 0.001))
        response = connection.getresponse()
        response.read(65536)
    except OSError as e:  # refused, reset, timed out
        reason = "timed out" if isinstance(e, socket.timeout) else str(e) or type(e).__name__
        return f"GET http://127.0.0.1:{port}{PATH}: {reason}"
    except http.client.HTTPException as e:
        return f"GET http://127.0.0.1:{port}{PATH}: invalid HTTP response ({type(e).__name__})"
    finally:
        connection.close()
    if response.status != 200:
        return f"GET http://127.0.0.1:{port}{PATH}: HTTP {response.status} {response.reason}"
    return ""


def main() -> int:
    reason = check()
    if reason:
        print(f"not ready: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
