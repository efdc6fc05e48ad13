"""The one place where rules reach the plain-Python core.

The core (`aegis_plugin/core/`) runs as a PEX inside Pants sandboxes, so no import shows the tie: every
command a rule runs is a `CoreCommand` here, and each maps onto one subcommand of `aegis_plugin.core.cli`
(the standard library, and `zstandard` from `[aegis].core_resolve` for zstd layers); the entry points that need
more third-party code are the `CoreTool`s.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from pants.backend.python.target_types import EntryPoint
from pants.backend.python.util_rules.interpreter_constraints import InterpreterConstraints
from pants.backend.python.util_rules.pex import PexRequest, VenvPex, VenvPexProcess
from pants.backend.python.util_rules.pex_requirements import EntireLockfile, Lockfile, Resolve
from pants.engine.fs import CreateDigest, Digest, FileContent, MergeDigests
from pants.engine.process import FallibleProcessResult, Process
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

import aegis_plugin.core
from aegis_plugin.subsystems.aegis import AegisSubsystem
from aegis_plugin.util_rules import core_imports

_CORE_DIR = Path(aegis_plugin.core.__file__).parent
# The interpreter the core runs on: fixed, so compressed layers come from one zlib on every machine.
CORE_INTERPRETER_CONSTRAINTS = InterpreterConstraints(["CPython==3.11.*"])


class CoreCommand(Enum):
    """Subcommands of `aegis_plugin.core.cli`, one per kind of build step."""

    FILES_LAYER = "files-layer"  # core/cli.py: files_layer -> oci/layer.py
    DEBIAN_LAYER = "debian-layer"  # core/cli.py: debian_layer -> debian/rootfs.py
    LOCATE_WHEELS = "locate-wheels"  # core/cli.py: locate_wheels -> python/simple_index.py
    DEPS_LAYER = "deps-layer"  # core/cli.py: deps_layer -> python/dependencies.py, wheels.py, site_packages.py
    IMAGE = "image"  # core/cli.py: image -> oci/image.py, oci/layout.py, oci/tarball.py
    FETCH = "fetch"  # core/cli.py: fetch -> download.py
    PINNED_FILES = "pinned-files"  # core/cli.py: pinned_files (registry files into the cache)


class CoreTool(Enum):
    """Core entry points that need third-party code: each runs as a PEX of the core modules it imports plus one
    resolve, whose lock (a hash-pinned requirements file) is installed whole."""

    CONTRACT_TEST = "aegis_plugin.core.contract.cli"  # `pants test`: resolve [aegis-contract-test].resolve
    CONTRACT_SERVE = "aegis_plugin.core.contract.serve"  # `pants run`: the same resolve
    SBOM = "aegis_plugin.core.sbom.cli"  # `pants package`: resolve [aegis-sbom].resolve
    PUBLISH = "aegis_plugin.core.publish.cli"  # `pants publish`: resolve [aegis-publish].resolve
    GUARDS = "aegis_plugin.core.guards.cli"  # `pants lint` and `package`: resolve [aegis-guards].resolve


class AegisBuildError(Exception):
    """A user-facing build failure: one line naming the target and field."""


def core_files(subdir: str = "") -> tuple[FileContent, ...]:
    """The core's Python files (tests excluded), as paths relative to the buildroot-style package root."""
    root = _CORE_DIR / subdir if subdir else _CORE_DIR
    files = [
        FileContent(str(Path("aegis_plugin/core") / path.relative_to(_CORE_DIR)), path.read_bytes())
        for path in sorted(root.rglob("*.py"))
        if not path.name.endswith("_test.py") and "__pycache__" not in path.parts
    ]
    return tuple(files)


@dataclass(frozen=True)
class CoreSourcesRequest:
    entry_module: str  # e.g. "aegis_plugin.core.cli"


@dataclass(frozen=True)
class CoreSources:
    """The core files one entry point imports, as a digest: the sources of the PEX that runs it. A PEX holds
    nothing else, so editing a module that a step never imports (publishing, a test helper) leaves that
    step's cache key as it was."""

    digest: Digest


@rule
async def core_sources(request: CoreSourcesRequest) -> CoreSources:
    files = {f.path: f for f in [FileContent("aegis_plugin/__init__.py", b""), *core_files()]}
    closure = core_imports.closure(request.entry_module, {path: f.content for path, f in files.items()})
    return CoreSources(await Get(Digest, CreateDigest(files[path] for path in closure)))


@dataclass(frozen=True)
class AegisCorePex:
    pex: VenvPex


CORE_CLI = "aegis_plugin.core.cli"


@rule(desc="Building the Aegis core", level=LogLevel.DEBUG)
async def build_core_pex(aegis: AegisSubsystem) -> AegisCorePex:
    sources, lockfile = await MultiGet(
        Get(CoreSources, CoreSourcesRequest(CORE_CLI)),
        Get(Lockfile, Resolve(aegis.core_resolve, use_entire_lockfile=True)),
    )
    pex = await Get(
        VenvPex,
        PexRequest(
            output_filename="aegis-core.pex",
            internal_only=True,
            sources=sources.digest,
            requirements=EntireLockfile(lockfile),
            interpreter_constraints=CORE_INTERPRETER_CONSTRAINTS,
            main=EntryPoint(CORE_CLI),
        ),
    )
    return AegisCorePex(pex)


@dataclass(frozen=True)
class CoreToolPexRequest:
    tool: CoreTool
    resolve: str


@rule
async def core_tool_pex_request(request: CoreToolPexRequest) -> PexRequest:
    lockfile, sources = await MultiGet(
        Get(Lockfile, Resolve(request.resolve, use_entire_lockfile=True)),
        Get(CoreSources, CoreSourcesRequest(request.tool.value)),
    )
    return PexRequest(
        output_filename=f"{request.tool.name.lower()}.pex",
        internal_only=True,
        sources=sources.digest,
        requirements=EntireLockfile(lockfile),
        interpreter_constraints=CORE_INTERPRETER_CONSTRAINTS,
        main=EntryPoint(request.tool.value),
    )


@dataclass(frozen=True)
class CoreToolPex:
    pex: VenvPex


@rule
async def build_core_tool_pex(request: CoreToolPexRequest) -> CoreToolPex:
    """A tool's PEX. A rule may ask for it early, beside slow steps, so that the step that runs the tool finds
    it built."""
    return CoreToolPex(await Get(VenvPex, PexRequest, await Get(PexRequest, CoreToolPexRequest, request)))


@dataclass(frozen=True)
class CoreProcess:
    """One run of a core command. `error_context` prefixes its one-line error, e.g. `a/b:c: field x`.

    `spec`, when given, is JSON-serialisable data written to `spec.json` and passed as `--spec spec.json`.
    """

    command: CoreCommand | CoreToolPexRequest  # a subcommand of the core CLI, or a tool's own entry point
    argv: tuple[str, ...]
    input_digest: Digest
    description: str
    error_context: str
    spec: FrozenDict[str, Any] | None = None
    output_directory: str = "out"
    # How long a local run waits for the remote cache to answer first (Pants runs both, and takes whichever
    # ends first): for a step that can only fail locally until the remote cache has answered.
    remote_cache_speculation_delay_millis: int = 0


@dataclass(frozen=True)
class CoreResult:
    output_digest: Digest


def freeze(value: Any) -> Any:
    """A hashable copy of JSON-like data (dicts and lists become FrozenDicts and tuples), for `spec`."""
    if isinstance(value, dict):
        return FrozenDict({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """JSON for the frozen collections a hashable request holds (`json.dumps(..., default=thaw)`)."""
    if isinstance(value, FrozenDict):
        return dict(value)
    raise TypeError(f"{value!r} is not JSON-serialisable")


@rule
async def run_core_process(request: CoreProcess, core: AegisCorePex) -> CoreResult:
    argv, input_digest = request.argv, request.input_digest
    if request.spec is not None:
        spec = json.dumps(request.spec, sort_keys=True, default=thaw).encode()
        spec_digest = await Get(Digest, CreateDigest([FileContent("spec.json", spec)]))
        input_digest = await Get(Digest, MergeDigests([spec_digest, input_digest]))
        argv = ("--spec", "spec.json", *argv)
    if isinstance(request.command, CoreCommand):
        pex, argv = core.pex, (request.command.value, *argv)
    else:
        pex = (await Get(CoreToolPex, CoreToolPexRequest, request.command)).pex
    process = await Get(
        Process,
        VenvPexProcess(
            pex,
            argv=(*argv, "--out", request.output_directory),
            input_digest=input_digest,
            output_directories=(request.output_directory,),
            description=request.description,
            level=LogLevel.DEBUG,
        ),
    )
    if request.remote_cache_speculation_delay_millis:
        process = dataclasses.replace(
            process, remote_cache_speculation_delay_millis=request.remote_cache_speculation_delay_millis
        )
    result = await Get(FallibleProcessResult, Process, process)
    if result.exit_code != 0:
        raise core_error(request.error_context, result.stderr)
    return CoreResult(result.output_digest)


def core_error(context: str, stderr: bytes) -> AegisBuildError:
    """The build error for a failed core process: the core reports what a user can fix as one `aegis: ...`
    line (core/errors.py); anything else is a bug, worth showing whole."""
    text = stderr.decode(errors="replace").strip()
    lines = [line for line in text.splitlines() if line.startswith("aegis: ")]
    return AegisBuildError(f"{context}: {lines[-1][len('aegis: '):] if lines else text}")


def rules():
    return collect_rules()
