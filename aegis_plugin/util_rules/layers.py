"""Rules that build one image layer each, as a cacheable core process whose output is `out/layer.*`.

Layers are split by how often they change, so registries and caches reuse them: the Debian base (per lock),
the third-party Python distributions (per resolve subset), the model files, and the app.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from pants.backend.python.subsystems.repos import PythonRepos
from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.target_types import PythonRequirementsField
from pants.backend.python.util_rules.python_sources import PythonSourceFiles, StrippedPythonSourceFiles
from pants.core.target_types import http_source
from pants.engine.addresses import Address
from pants.engine.fs import (
    AddPrefix,
    Digest,
    DigestContents,
    DigestEntries,
    DigestSubset,
    DownloadFile,
    FileDigest,
    FileEntry,
    MergeDigests,
    PathGlobs,
)
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import TransitiveTargets, TransitiveTargetsRequest

from aegis_plugin.core.debian.lock import DebPackage, LockError, fetch_url, packages_for, parse_lock
from aegis_plugin.core.download import has_secrets, redact_text, redact_url
from aegis_plugin.core.debian.sources import mirror_for_suite, read_apt_sources
from aegis_plugin.core.specs import FilesLayerSpec, HandlerCheckSpec, LayerEntrySpec, to_json
from aegis_plugin.subsystems.aegis import AegisSubsystem
from aegis_plugin.util_rules.core_process import (
    AegisBuildError,
    CoreCommand,
    CoreProcess,
    CoreResult,
    core_files,
    freeze,
)
from aegis_plugin.util_rules.download import PinnedDownload, PinnedDownloadRequest


APP_SITE_PACKAGES = "/app/site-packages"  # third-party distributions, on PYTHONPATH
APP_SRC = "/app/src"  # the handler's first-party imports, on PYTHONPATH
HANDLER_IN_IMAGE = "/app/server/handler.py"  # what the runtime imports
MODEL_DIR = "/app/model"
SINGLE_WEIGHTS = "weights.safetensors"  # the seed's name for a one-file checkpoint


@dataclass(frozen=True)
class Layer:
    """A layer step's output directory `out/`: the blob under its OCI layout name (`blobs/sha256/<hex>`),
    `layer.json` (its descriptor), `toc.json` (its entries) and what the step reports for the SBOM."""

    digest: Digest
    blob_digest: str  # "sha256:<hex>"

    @property
    def blob_path(self) -> str:
        return f"out/blobs/sha256/{self.blob_digest[len('sha256:'):]}"

    @property
    def toc_path(self) -> str:
        return "out/toc.json"  # every entry of the blob (core/oci/toc.py)


async def _layer(result: CoreResult) -> Layer:
    contents = await Get(DigestContents, DigestSubset(result.output_digest, PathGlobs(["out/layer.json"])))
    info = json.loads(contents[0].content)
    return Layer(result.output_digest, info["digest"])


# ---------------------------------------------------------------------------------------------------------
# Debian base


@dataclass(frozen=True)
class DebianLayerRequest:
    context: str  # e.g. "models/fraud:fraud: field `base_image` (//3rdparty/debian:python3.11-bookworm)"
    lockfile_digest: Digest
    lockfile_path: str
    platform: str = "linux/amd64"  # an image platform: its Debian architecture's packages
    compression: str = "gzip"  # or "zstd": the target's `layer_compression`


def debian_architecture(platform: str) -> str:
    """The Debian architecture of an image platform (`linux/amd64` -> `amd64`, `linux/arm64` -> `arm64`)."""
    return platform.partition("/")[2]


def _mirror_for(pkg: DebPackage, mirrors: dict[str, str], apt_sources: list, context: str) -> str:
    if pkg.suite in mirrors:
        return mirrors[pkg.suite]
    mirror = mirror_for_suite(apt_sources, pkg.suite)
    if mirror is None:
        raise AegisBuildError(
            f"{context}: no Debian archive serves suite {pkg.suite!r} for {pkg.name}: add it to the apt "
            f"sources or set `[aegis].debian_mirrors`"
        )
    return mirror


@rule(desc="Building a Debian base layer")
async def build_debian_layer(request: DebianLayerRequest, aegis: AegisSubsystem) -> Layer:
    contents = await Get(DigestContents, Digest, request.lockfile_digest)
    architecture = debian_architecture(request.platform)
    try:
        packages = packages_for(parse_lock(contents[0].content.decode()), architecture, request.lockfile_path)
    except LockError as e:
        raise AegisBuildError(f"{request.context}: {e}") from None
    mirrors = dict(aegis.debian_mirrors)
    apt_sources = read_apt_sources()
    downloads = []
    for pkg in packages:
        url = fetch_url(_mirror_for(pkg, mirrors, apt_sources, request.context), pkg)
        downloads.append(DownloadFile(url, FileDigest(pkg.sha256, pkg.size)))
    try:
        debs = await MultiGet(Get(Digest, DownloadFile, d) for d in downloads)
    except Exception as e:
        raise AegisBuildError(
            f"{request.context}: a locked Debian package could not be fetched "
            f"({redact_text(str(e).splitlines()[-1])}); "
            f"mirrors drop superseded versions: refresh the lock with `build-support/lock_debian.py` or point "
            f"`[aegis].debian_mirrors` at a snapshot archive"
        ) from None
    debs_digest = await Get(Digest, AddPrefix(await Get(Digest, MergeDigests(debs)), "debs"))
    result = await Get(
        CoreResult,
        CoreProcess(
            CoreCommand.DEBIAN_LAYER,
            ("--lock", request.lockfile_path, "--debs", "debs", "--arch", architecture,
             "--compression", request.compression),
            await Get(Digest, MergeDigests([debs_digest, request.lockfile_digest])),
            description=f"Building the {architecture} Debian base layer from {request.lockfile_path}",
            error_context=request.context,
        ),
    )
    return await _layer(result)


# ---------------------------------------------------------------------------------------------------------
# Third-party Python distributions


@dataclass(frozen=True)
class DepsLayerRequest:
    context: str
    handler: Address
    resolve: str
    platform: str = "linux/amd64"
    compression: str = "gzip"  # or "zstd": the target's `layer_compression`


@dataclass(frozen=True)
class LockedWheelsRequest:
    context: str
    resolve: str
    platform: str


@dataclass(frozen=True)
class LockedWheels:
    """Every wheel of the resolve's lock that applies to the platform, downloaded by its pinned sha256 and
    size, under `wheels/`: one cache entry per file, shared by every image and resolve that pins it."""

    digest: Digest


@rule(desc="Downloading the locked wheels")
async def locked_wheels(request: LockedWheelsRequest, python_setup: PythonSetup, repos: PythonRepos) -> LockedWheels:
    lockfile = python_setup.resolves[request.resolve]
    if not repos.indexes:
        raise AegisBuildError(f"{request.context}: [python-repos].indexes is empty: the locked wheels need an index")
    index = repos.indexes[0]
    if has_secrets(index):
        raise AegisBuildError(
            f"{request.context}: [python-repos].indexes: {redact_url(index)} carries credentials or a query, which "
            "would become part of a cache key; use an index URL without them"
        )
    located = await Get(
        CoreResult,
        CoreProcess(
            CoreCommand.LOCATE_WHEELS,
            ("--lock", lockfile, "--index", index, "--platform", request.platform),
            await Get(Digest, PathGlobs([lockfile])),
            description=f"Locating the wheels of {lockfile} for {request.platform}",
            error_context=f"{request.context} (resolve {request.resolve!r})",
        ),
    )
    (listing,) = await Get(DigestContents, DigestSubset(located.output_digest, PathGlobs(["out/wheels.json"])))
    downloads = await MultiGet(
        Get(
            PinnedDownload,
            PinnedDownloadRequest(
                f"{request.context} (resolve {request.resolve!r}, {wheel['filename']})",
                http_source(wheel["url"], len=wheel["size"], sha256=wheel["sha256"], filename=wheel["filename"]),
            ),
        )
        for wheel in json.loads(listing.content)
    )
    merged = await Get(Digest, MergeDigests(d.digest for d in downloads))
    return LockedWheels(await Get(Digest, AddPrefix(merged, "wheels")))


@rule(desc="Building the Python dependencies layer")
async def build_deps_layer(request: DepsLayerRequest, python_setup: PythonSetup) -> Layer:
    lockfile = python_setup.resolves[request.resolve]
    transitive, wheels, lock_digest = await MultiGet(
        Get(TransitiveTargets, TransitiveTargetsRequest([request.handler])),
        Get(LockedWheels, LockedWheelsRequest(request.context, request.resolve, request.platform)),
        Get(Digest, PathGlobs([lockfile])),
    )
    # The handler's third-party requirements: the layer holds their closure on the platform, nothing else.
    requirements = sorted({
        str(requirement)
        for target in transitive.closure
        if target.has_field(PythonRequirementsField)
        for requirement in target[PythonRequirementsField].value
    })
    result = await Get(
        CoreResult,
        CoreProcess(
            CoreCommand.DEPS_LAYER,
            (
                "--wheels", "wheels", "--lock", lockfile, "--platform", request.platform,
                "--prefix", APP_SITE_PACKAGES, "--compression", request.compression,
                *(f"--require={r}" for r in requirements),
            ),
            await Get(Digest, MergeDigests([wheels.digest, lock_digest])),
            description=f"Building the Python dependencies layer from resolve {request.resolve!r}",
            error_context=request.context,
        ),
    )
    return await _layer(result)


# ---------------------------------------------------------------------------------------------------------
# Files (model, app)


@dataclass(frozen=True)
class LayerFile:
    """Files of a files layer: `digest` holds one file for `path`, or any number under a `path` ending
    in `/`; or `text` is the literal content of `path`."""

    path: str  # in the image
    origin: str  # what the user wrote, for errors: e.g. "field `weights`"
    digest: Digest | None = None
    text: str | None = None
    check: str | None = None  # "safetensors" | "json" | "model_card": validated by the core


@dataclass(frozen=True)
class FilesLayerRequest:
    context: str
    description: str
    files: tuple[LayerFile, ...]
    mtime: int
    # "zstd" where the target's `layer_compression` says so; "none" for weights: they do not compress, and a plain
    # tar is read at disk speed.
    compression: str = "gzip"
    # Files checked together as a model checkpoint (`core/model/checkpoint.py`) but not put in this layer:
    # (name in the model directory, digest of the one file).
    checkpoint: tuple[tuple[str, Digest], ...] = ()
    # For the app layer: the handler must start (core/python/handler_check.py): its path in the repository,
    # for messages, and the top-level modules the deps layer makes importable.
    handler_check: HandlerCheckSpec | None = None


async def files_layer_inputs(request: FilesLayerRequest) -> tuple[Digest, FilesLayerSpec]:
    """The inputs (under `in/` and `checkpoint/`) and spec of the core step that writes a files layer: its own,
    or the image step, which writes a small top layer itself (`OciImageRequest.top_layer`)."""
    with_digest = [(i, f) for i, f in enumerate(request.files) if f.digest is not None]
    all_entries = await MultiGet(Get(DigestEntries, Digest, f.digest) for _, f in with_digest)
    prefixed = await MultiGet(Get(Digest, AddPrefix(f.digest, f"in/{i}")) for i, f in with_digest)
    spec_entries = [
        LayerEntrySpec(f.path, f.origin, f.path.rsplit("/", 1)[-1], 0o644, text=f.text)
        for f in request.files
        if f.digest is None
    ]
    for (index, file), entries in zip(with_digest, all_entries):
        files = [e for e in entries if isinstance(e, FileEntry)]
        if not file.path.endswith("/") and len(files) != 1:
            raise AegisBuildError(f"{request.context}: {file.origin} must name exactly one file, got {len(files)}")
        for entry in files:
            path = f"{file.path}{entry.path}" if file.path.endswith("/") else file.path
            # Modes come from the digest: sandbox files may be hardlinks with the wrong bits.
            spec_entries.append(LayerEntrySpec(path, file.origin, entry.path, 0o755 if entry.is_executable else 0o644,
                                               source=f"in/{index}/{entry.path}", check=file.check,
                                               sha256=entry.file_digest.fingerprint))
    checkpoint_inputs = await MultiGet(
        Get(Digest, AddPrefix(d, f"checkpoint/{i}")) for i, (_, d) in enumerate(request.checkpoint)
    )
    checkpoint_entries = await MultiGet(Get(DigestEntries, Digest, d) for _, d in request.checkpoint)
    checkpoint = {
        name: f"checkpoint/{i}/{next(e.path for e in entries if isinstance(e, FileEntry))}"
        for i, ((name, _), entries) in enumerate(zip(request.checkpoint, checkpoint_entries))
    }
    inputs = await Get(Digest, MergeDigests([*prefixed, *checkpoint_inputs]))
    return inputs, FilesLayerSpec(request.mtime, request.description, tuple(spec_entries), request.compression,
                                  checkpoint or None, request.handler_check)


@rule(desc="Building a files layer")
async def build_files_layer(request: FilesLayerRequest) -> Layer:
    inputs, spec = await files_layer_inputs(request)
    result = await Get(
        CoreResult,
        CoreProcess(
            CoreCommand.FILES_LAYER,
            (),
            inputs,
            description=f"Building the {request.description} layer",
            error_context=request.context,
            spec=freeze(to_json(spec)),
        ),
    )
    return await _layer(result)


# ---------------------------------------------------------------------------------------------------------
# The app: the model author's handler and its first-party code, Aegis' server, the manifest and the lock


@dataclass(frozen=True)
class AppLayerRequest:
    context: str
    handler: Digest  # exactly the handler file
    handler_path: str
    handler_sources: PythonSourceFiles  # the handler's first-party closure, the handler included
    manifest: str
    requirements_lock: str
    mtime: int
    importable: tuple[str, ...]  # the top-level modules of the deps layer
    compression: str = "gzip"  # or "zstd": the target's `layer_compression`


@rule(desc="Building the app layer")
async def build_app_layer(request: AppLayerRequest) -> Layer:
    handler_path = request.handler_path
    stripped = await Get(StrippedPythonSourceFiles, PythonSourceFiles, request.handler_sources)
    # The handler goes to /app/server; the first-party code it imports to /app/src (on PYTHONPATH).
    snapshot = stripped.stripped_source_files.snapshot
    not_handler = [f"!{p}" for p in snapshot.files if handler_path == p or handler_path.endswith(f"/{p}")]
    first_party = await Get(Digest, DigestSubset(snapshot.digest, PathGlobs(["**", *not_handler])))
    runtime = [
        LayerFile(
            "/app/server/healthcheck.py" if f.path.endswith("/healthcheck.py")
            else "/app/aegis_runtime/" + f.path.split("/runtime/", 1)[1],
            "the Aegis runtime",
            text=f.content.decode(),
        )
        for f in core_files("runtime")
    ]
    files = (
        LayerFile(HANDLER_IN_IMAGE, "field `handler`", request.handler),
        LayerFile("/app/manifest.yaml", "the manifest", text=request.manifest),
        LayerFile("/app/requirements.lock", "the runtime lock", text=request.requirements_lock),
        *runtime,
        LayerFile(f"{APP_SRC}/", "the handler's first-party dependencies", first_party),
    )
    handler_check = HandlerCheckSpec(handler_path, HANDLER_IN_IMAGE, APP_SRC, request.importable)
    return await Get(Layer, FilesLayerRequest(request.context, "app", files, request.mtime, request.compression,
                                              handler_check=handler_check))


def rules():
    return collect_rules()
