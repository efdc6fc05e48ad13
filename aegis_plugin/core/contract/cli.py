"""The contract test of a built image, as one command:

    python -m aegis_plugin.core.contract.cli --layout DIR --examples FILE --report OUT.json [--ref NAME]

It unpacks the OCI layout, starts the image's entrypoint in a bwrap sandbox on a loopback-only network, waits
for /v2/health/ready, runs the checks in `checks.py`, writes a JSON report and prints a table. Exit status:
0 when every check passes, 1 when one fails, 2 when the test could not be set up (one `aegis: ...` line on
stderr). The command first re-executes itself in a private network namespace (see `sandbox.py`).

An image of another architecture than the machine's (linux/arm64 here) runs under qemu user-mode emulation
(`sandbox.find_emulator`), with the same checks; the report's `image.emulator` names the emulator.

The image's /app/manifest.yaml declares its `accelerator`, and the report's `accelerator.mode` says which
contract ran:

    cpu      `cpu` (or none): the contract above.
    gpu      `cuda-MAJOR.MINOR` on a host with an NVIDIA GPU: the same contract, with the host's device nodes
             and driver libraries passed into the sandbox (`sandbox.find_gpu`); the report lists the nodes.
    no-gpu   `cuda-MAJOR.MINOR` on a host without one: the image must refuse to serve rather than fall back to
             the CPU. The server must be live but stay not ready, refuse inference with a 503 naming the
             accelerator, log that it is not ready and never construct the handler, and stop cleanly on SIGTERM.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from aegis_plugin.core.errors import AegisError

from . import checks, sandbox, unpack
from .checks import CheckResult
from .sandbox import SandboxError

MODULE = "aegis_plugin.core.contract.cli"
WORKDIR_VARIABLE = "AEGIS_CONTRACT_WORKDIR"  # a work directory the parent process created (and removes)
EXIT_PASSED, EXIT_FAILED, EXIT_SETUP = 0, 1, 2


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n\n")[0])
    parser.add_argument("--layout", required=True, help="the image's OCI layout directory")
    parser.add_argument("--examples", required=True,
                        help='JSON list of {"inputs": {name: list}, "outputs": {name: list}}')
    parser.add_argument("--report", required=True, help="where to write the JSON report")
    parser.add_argument("--ref", help="the manifest's org.opencontainers.image.ref.name (default: the only one)")
    parser.add_argument("--platform", action="append",
                        help="`os/architecture`: test this platform's image of an image index (repeatable: each "
                             "in turn; the report then has one section per platform)")
    parser.add_argument("--ready-timeout", type=float, default=60.0,
                        help="seconds to wait for /v2/health/ready, or /live for a CUDA image on a host without "
                             "a GPU (default: %(default)s)")
    parser.add_argument("--not-ready-window", type=float, default=checks.NOT_READY_WINDOW_SECONDS,
                        help="seconds a CUDA image on a host without a GPU must keep answering 503 to "
                             "/v2/health/ready (default: %(default)s)")
    parser.add_argument("--stop-grace", type=float, default=checks.STOP_GRACE_SECONDS,
                        help="seconds the server may take to exit after SIGTERM (default: %(default)s)")
    parser.add_argument("--stop-timeout", type=float, default=15.0,
                        help="seconds after SIGTERM before SIGKILL (default: %(default)s)")
    parser.add_argument("--idle-connections", type=int, default=1,
                        help="idle keep-alive connections held open during the SIGTERM check (default: %(default)s)")
    parser.add_argument("--expect-uid", type=int, default=checks.EXPECTED_UID)
    parser.add_argument("--expect-gid", type=int, default=checks.EXPECTED_GID)
    parser.add_argument("--workdir", help="where to unpack the rootfs (default: the system temp directory)")
    parser.add_argument("--log-dir", help="keep the container's stdout/stderr here (default: discarded)")
    parser.add_argument("--keep-rootfs", action="store_true", help="do not delete the unpacked rootfs")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        if not sandbox.in_private_netns():
            return _reexec(args, argv)
        sandbox.check_private_netns()
        return run(args)
    except (AegisError, OSError) as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"aegis: {message}", file=sys.stderr)
        _write_report(args.report, {"passed": False, "error": str(e), "checks": []})
        return EXIT_SETUP


def _reexec(args: argparse.Namespace, argv: list[str]) -> int:
    """Run this command again in a private network namespace; keep the work directory on this side."""
    report = Path(args.report)
    if report.exists():
        report.unlink()
    workdir = Path(tempfile.mkdtemp(prefix="aegis-contract-", dir=_workdir_base(args)))
    os.chmod(workdir, 0o755)  # the sandboxed user must reach the rootfs below it
    os.environ[WORKDIR_VARIABLE] = str(workdir)
    try:
        code = sandbox.reexec_in_private_netns(MODULE, argv)
    finally:
        os.environ.pop(WORKDIR_VARIABLE, None)
        if args.keep_rootfs:
            print(f"the unpacked rootfs is kept in {workdir / 'rootfs'}", file=sys.stderr)
        else:
            _remove_tree(workdir)
    if code in (EXIT_PASSED, EXIT_FAILED, EXIT_SETUP) and report.exists():
        return code
    if code < 0:
        raise SandboxError(f"the driver was stopped by signal {-code}")
    raise SandboxError(f"the driver exited with status {code} without writing a report (see the messages above; "
                       f"`bwrap: ...` means no private network namespace could be created)")


def _workdir_base(args: argparse.Namespace) -> Optional[str]:
    if args.workdir:
        return args.workdir
    if os.geteuid() != 0:
        return None
    # The server runs as the image's user, which must reach the rootfs: skip a private TMPDIR.
    for candidate in (tempfile.gettempdir(), "/tmp", "/var/tmp"):
        path = Path(candidate)
        if path.is_dir() and sandbox.unreachable(path, args.expect_uid, args.expect_gid) is None:
            return candidate
    return None


def _remove_tree(path: Path) -> None:
    def make_writable(function: Any, target: str, _exc: Any) -> None:
        os.chmod(os.path.dirname(target), 0o700)
        function(target)

    shutil.rmtree(path, onerror=make_writable)


def run(args: argparse.Namespace) -> int:
    """The contract test proper, of each platform asked for in turn; runs inside the private network namespace."""
    examples = checks.load_examples(args.examples)
    own_workdir = WORKDIR_VARIABLE not in os.environ
    if own_workdir:
        workdir = Path(tempfile.mkdtemp(prefix="aegis-contract-", dir=_workdir_base(args)))
        os.chmod(workdir, 0o755)
    else:
        workdir = Path(os.environ[WORKDIR_VARIABLE])
    platforms = args.platform or [None]
    reports = {}
    try:
        for platform in platforms:
            rootfs = workdir / ("rootfs" if platform is None else f"rootfs-{platform.replace('/', '-')}")
            report, results, heading = _run_platform(args, examples, rootfs, workdir, platform)
            reports[platform] = report
            print_table(results, heading=heading)
    finally:
        if own_workdir and not args.keep_rootfs:
            _remove_tree(workdir)
    if platforms == [None]:
        combined = reports[None]
    else:
        combined = {"passed": all(r["passed"] for r in reports.values()), "platforms": reports}
    _write_report(args.report, combined)
    return EXIT_PASSED if combined["passed"] else EXIT_FAILED


def _run_platform(
    args: argparse.Namespace, examples: Any, rootfs: Path, workdir: Path, platform: Optional[str]
) -> tuple[dict, list[CheckResult], Optional[str]]:
    """One image's contract test: its report, its results and the line above its table."""
    container: Optional[sandbox.Container] = None
    contract: Optional[checks.ContractRun] = None
    try:
        started = time.monotonic()
        image = unpack.unpack(args.layout, rootfs, ref=args.ref, platform=platform)
        unpack_seconds = time.monotonic() - started
        app_dir = image.config.env_dict().get("AEGIS_APP_DIR", "/app")
        manifest = checks.read_manifest(image.rootfs, app_dir)
        accelerator = manifest.get("accelerator", "cpu")
        cuda = accelerator.startswith("cuda-")
        emulator = sandbox.find_emulator(image.config.architecture)
        gpu = sandbox.find_gpu() if cuda and emulator is None else None  # the host's driver is for its own CPUs
        mode = ("gpu" if gpu else "no-gpu") if cuda else "cpu"
        log_dir = Path(args.log_dir) if args.log_dir else workdir / "logs"
        if platform is not None:
            log_dir = log_dir / platform.replace("/", "-")
        container = sandbox.start(image.config, image.rootfs, log_dir, gpu=gpu, emulator=emulator)
        try:
            if mode == "no-gpu":
                first = checks.wait_live(container, timeout=args.ready_timeout)
            else:
                first = checks.wait_ready(container, timeout=args.ready_timeout)
            if not first.passed and container.bwrap_error():
                raise SandboxError(f"the sandbox did not start: {container.bwrap_error()}")
            results = [first]
            if first.passed:
                contract = checks.ContractRun(container, examples, manifest["model_id"], manifest.get("version", ""))
                if mode == "no-gpu":
                    results += checks.run_no_gpu_checks(contract, accelerator, args.not_ready_window,
                                                        args.stop_grace, args.stop_timeout, args.idle_connections)
                else:
                    results += checks.run_checks(contract, args.expect_uid, args.expect_gid, args.stop_grace,
                                                 args.stop_timeout, args.idle_connections)
        finally:
            stop = sandbox.stop(container, hard_timeout=args.stop_timeout)
        report = {
            "passed": all(r.passed for r in results),
            "summary": {"passed": sum(r.passed for r in results), "failed": sum(not r.passed for r in results)},
            "checks": [r.to_json() for r in results],
            "accelerator": {"declared": accelerator, "gpu": list(gpu.devices) if gpu else None, "mode": mode},
            "image": {"layout": str(args.layout), "ref": args.ref, "manifest_digest": image.manifest_digest,
                      "platform": f"{image.config.os}/{image.config.architecture}",
                      "emulator": os.path.basename(emulator) if emulator else None,
                      "config_digest": image.config_digest, "model_id": manifest["model_id"],
                      "version": manifest.get("version"), "unpack_seconds": round(unpack_seconds, 2)},
            "container": {"argv": container.argv, "user": f"{container.uid}:{container.gid}",
                          "port": container.port, "bwrap": container.bwrap_argv,
                          "stop": {"exit_code": stop.exit_code, "seconds": round(stop.seconds, 3),
                                   "killed": stop.killed}},
            "container_log_tail": container.log_tail(50),
        }
    finally:
        if contract is not None:
            contract.close()
        if container is not None and container.running():
            container.process.kill()
            container.process.wait()
    emulated = f"linux/{image.config.architecture} image, run under {os.path.basename(emulator)}" if emulator else None
    if platform is not None and emulated is None:
        emulated = f"{platform} image"
    heading = "\n".join(h for h in (emulated, accelerator_heading(accelerator, mode, gpu)) if h)
    return report, results, heading or None


def _write_report(path: str, report: dict) -> None:
    target = Path(path)
    if target.parent:
        target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")


def accelerator_heading(accelerator: str, mode: str, gpu: Optional[sandbox.GpuAccess]) -> Optional[str]:
    """The line above the table for a CUDA image: which contract ran, and why."""
    if mode == "gpu" and gpu is not None:
        return f"accelerator {accelerator} declared, NVIDIA GPU passed in: {', '.join(gpu.devices)}"
    if mode == "no-gpu":
        return f"accelerator {accelerator} declared, no NVIDIA GPU here: checking that nothing is served on the CPU"
    return None


def print_table(results: list[CheckResult], out: Any = None, heading: Optional[str] = None) -> None:
    out = out or sys.stdout
    if heading:
        print(heading, file=out)
    width = max(len(r.name) for r in results)
    for r in results:
        first = r.detail.splitlines()[0] if r.detail else ""
        if len(first) > 110:
            first = first[:107] + "..."
        print(f"{'PASS' if r.passed else 'FAIL'}  {r.name:<{width}}  {first}", file=out)
    failed = [r for r in results if not r.passed]
    print(f"{len(results) - len(failed)} of {len(results)} checks passed", file=out)
    for r in failed:
        print(f"\n--- {r.name} ---\n{r.detail}", file=out)


if __name__ == "__main__":
    sys.exit(main())
