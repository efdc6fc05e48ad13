"""Serve a built image locally, the way the contract test runs it (bwrap, no Docker daemon), for `pants run`:

    python -m aegis_plugin.core.contract.serve --layout DIR [--port 8080] [--host 127.0.0.1]

Unlike the contract test it shares the host's network, so the user can reach it; it listens on `--host`
(loopback by default). The container's JSON logs stream to stdout; Ctrl-C (or SIGTERM) stops it gracefully.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

from aegis_plugin.core.errors import AegisError

from . import checks, sandbox, unpack


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="pants run <model_package>", description=__doc__.split("\n\n")[0])
    parser.add_argument("--layout", required=True, help="the image's OCI layout directory")
    parser.add_argument("--port", type=int, default=8080, help="port to serve on (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--platform", help="`os/architecture`: which image of an image index to serve")
    args = parser.parse_args(argv)
    _stop_with_parent()

    workdir = Path(tempfile.mkdtemp(prefix="aegis-run-"))
    os.chmod(workdir, 0o755)  # the sandboxed user must reach the rootfs below it
    try:
        try:
            image = unpack.unpack(args.layout, workdir / "rootfs", platform=args.platform)
            manifest = checks.read_manifest(image.rootfs)
            # A CUDA image gets the host's GPU, as the NVIDIA container runtime would give it; without one it
            # starts and reports not-ready (it never runs on the CPU).
            cuda = str(manifest.get("accelerator", "cpu")).startswith("cuda-")
            emulator = sandbox.find_emulator(image.config.architecture)
            container = sandbox.start(image.config, image.rootfs, workdir / "logs", port=args.port,
                                      extra_env={"AEGIS_HOST": args.host},
                                      gpu=sandbox.find_gpu() if cuda and emulator is None else None, emulator=emulator)
        except AegisError as e:  # the layout, the unpacker, the sandbox, the server's setup
            print(f"aegis: {e}", file=sys.stderr)
            return 2
        url = f"http://{args.host}:{args.port}"
        print(f"Serving {manifest['model_id']} {manifest.get('version', '')} ({image.manifest_digest}) at "
              f"{url}/v2/models/{manifest['model_id']} (ready: {url}/v2/health/ready); Ctrl-C stops it.",
              flush=True)
        stopping = []
        signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        with open(container.stdout_path, "rb") as log:
            while container.running() and not stopping:
                _copy_new_lines(log)
                time.sleep(0.2)
            result = sandbox.stop(container) if container.running() else None
            _copy_new_lines(log)
        if result is None:
            sys.stdout.write(container.log_tail())
            return container.process.returncode or 1
        return result.exit_code or 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _stop_with_parent() -> None:
    """Ask Linux for SIGTERM when our parent (the `pants` client) dies, so no image outlives the run."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the container's bwrap still dies with this process


def _copy_new_lines(log) -> None:
    chunk = log.read()
    if chunk:
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
