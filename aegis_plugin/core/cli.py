"""Entry point of the Aegis core PEX: one subcommand per kind of build step, run by Pants in a sandbox.

Each subcommand reads its inputs from the sandbox and writes its outputs under `--out`. User errors are
reported as one `aegis: ...` line on stderr with exit code 2; the calling rule prefixes the target and field.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from datetime import datetime, timezone

from aegis_plugin.core.errors import AegisError
from aegis_plugin.core.model import checkpoint, model_card, safetensors
from aegis_plugin.core.oci import image, layout, modelpack, tarball
from aegis_plugin.core.oci.layer import LayerEntry, LayerInfo, write_layer
from aegis_plugin.core.oci.toc import write_toc
from aegis_plugin.core.python import handler_check
from aegis_plugin.core.python.interpreter import MACHINES, Interpreter
from aegis_plugin.core.specs import (
    FilesLayerSpec, HandlerCheckSpec, ImageSpec, LayerEntrySpec, ModelArtifactSpec, SpecError,
)

# What only the cold steps use (the Debian base, the wheels, downloads) is imported by their subcommands: every
# edit runs `files-layer` and `image`, and those imports (urllib and http.client among them) cost each of them
# ~45 ms of a ~120 ms process.

# A layer step writes its blob under its OCI layout name (`blobs/sha256/<hex>`), so the image step only adds
# the config and manifest beside it: Pants merges the layer outputs into the layout without copying a byte.
LAYER_INFO = "layer.json"  # the blob's descriptor: digest, diff_id, size, media_type, and a description
LAYER_TOC = "toc.json"  # every entry of the blob, for steps that must not re-read it (core/oci/toc.py)
# What each layer step reports for the SBOM (see aegis_plugin/core/sbom/inventory.py for the whole format):
INVENTORY = "inventory.json"  # debian-layer: {"debian": [...]}; deps-layer: {"python": [...]}
WHEELS_INFO = "wheels.json"  # locate-wheels: [{name, version, filename, url, sha256, size}] of every wheel
FILES_INFO = "files.json"  # files-layer: [{path, sha256, sha1, size}] of every file of the layer
MODEL_CARD_INFO = "model_card.json"  # files-layer with a model card: its {sections, fields}
TOP_LAYER_DIR = "top-layer"  # image: where it writes its spec's top_layer, outside the out/ it returns
LAYER_COMPRESSIONS = ("gzip", "zstd")  # of the debian-layer and deps-layer steps (the target's `layer_compression`)
TENSORS_INFO = "tensors.json"  # files-layer checking a checkpoint: {parameters, dtypes} of all its tensors


class UserError(AegisError):
    pass


def _write_layer(
    entries: list[LayerEntry], out: str, mtime: int, description: str, compression: str = "gzip",
    file_digests: bool = True,
) -> LayerInfo:
    os.makedirs(out, exist_ok=True)
    partial = os.path.join(out, "layer.partial")
    info = write_layer(entries, partial, mtime, compression, file_digests)
    blob = layout.blob_path(out, info.digest)
    os.makedirs(os.path.dirname(blob), exist_ok=True)
    os.replace(partial, blob)
    _write_json(os.path.join(out, LAYER_INFO), {
        "digest": info.digest, "diff_id": info.diff_id, "size": info.size, "media_type": info.media_type,
        "description": description,
    })
    write_toc(os.path.join(out, LAYER_TOC), info.diff_id, info.toc)
    return info


def layer_blob(layer_dir: str) -> str:
    """The path of the blob a layer step wrote into `layer_dir`."""
    with open(os.path.join(layer_dir, LAYER_INFO)) as f:
        return layout.blob_path(layer_dir, json.load(f)["digest"])


def files_layer(args: argparse.Namespace) -> None:
    write_files_layer(FilesLayerSpec.from_json(_read_spec(args.spec)), args.out)


def write_files_layer(spec: FilesLayerSpec, out: str) -> None:
    """A layer of the files a `specs.FilesLayerSpec` lists, each checked as it says first, into `out`."""
    summary = None
    if spec.checkpoint:
        try:
            summary = checkpoint.validate_checkpoint(dict(spec.checkpoint))
        except checkpoint.CheckpointError as e:
            raise UserError(f"field `weights`: {e}")
    if spec.handler_check:
        _check_handler(spec.entries, spec.handler_check)
    entries = []
    for item in spec.entries:
        if item.check == "safetensors":
            try:
                safetensors.validate(item.source)
            except safetensors.SafetensorsError as e:
                raise UserError(f"{item.origin}: {item.name} is not a valid safetensors file: {e}")
        if item.check == "model_card":
            try:
                with open(item.source, encoding="utf-8") as f:
                    model_card.validate(f.read())
            except (UnicodeDecodeError, model_card.CardError) as e:
                raise UserError(f"{item.origin}: {item.name}: {e}")
        if item.check == "json":
            try:
                with open(item.source, "rb") as f:
                    json.load(f)
            except ValueError as e:
                raise UserError(f"{item.origin}: {item.name} is not valid JSON: {e}")
        if item.text is not None:
            entries.append(LayerEntry(item.path, "file", item.mode, data=item.text.encode()))
        else:
            entries.append(LayerEntry(item.path, "file", item.mode, source=item.source, sha256=item.sha256))
    info = _write_layer(entries, out, spec.mtime, spec.description, spec.compression)
    _write_json(os.path.join(out, FILES_INFO), [f.to_json() for f in info.files])
    if summary is not None:
        _write_json(os.path.join(out, TENSORS_INFO), {"parameters": summary.parameters,
                                                      "dtypes": list(summary.dtypes)})
    cards = [item for item in spec.entries if item.check == "model_card"]
    if cards:
        with open(cards[0].source, encoding="utf-8") as f:
            card = model_card.parse(f.read())
        _write_json(os.path.join(out, MODEL_CARD_INFO), {"sections": card.sections, "fields": card.fields})


def _read_spec(path: str) -> object:
    with open(path) as f:
        return json.load(f)


def _write_json(path: str, data: object) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, sort_keys=True, indent=1, ensure_ascii=False)
        f.write("\n")


def _check_handler(entries: tuple[LayerEntrySpec, ...], check: HandlerCheckSpec) -> None:
    """An image whose handler cannot start must not ship (see core/python/handler_check.py)."""

    def source(item: LayerEntrySpec, path: str) -> handler_check.SourceFile:
        if item.text is not None:
            return handler_check.SourceFile(path, item.text)
        with open(item.source, encoding="utf-8", errors="replace") as f:
            return handler_check.SourceFile(path, f.read())

    (handler,) = [e for e in entries if e.path == check.in_image]
    prefix = check.first_party_dir.rstrip("/") + "/"
    first_party = [source(e, e.path[len(prefix):]) for e in entries if e.path.startswith(prefix) and e.path.endswith(".py")]
    try:
        handler_check.check_handler(source(handler, check.handler), first_party, list(check.importable))
    except handler_check.HandlerError as e:
        raise UserError(f"field `handler`: {e}")


def debian_layer(args: argparse.Namespace) -> None:
    """The base layer: every Debian package the lock has for the architecture, its files plus dpkg records,
    and the non-root user."""
    from aegis_plugin.core.debian import rootfs
    from aegis_plugin.core.debian.lock import packages_for, parse_lock

    with open(args.lock) as f:
        packages = packages_for(parse_lock(f.read()), args.arch, os.path.basename(args.lock))
    with tempfile.TemporaryDirectory() as work_dir:
        base = rootfs.build_base([os.path.join(args.debs, p.deb_basename) for p in packages], packages, work_dir)
        # The SBOM takes the packages' files from their dpkg records: no per-file digests needed.
        _write_layer(base.entries, args.out, 0, f"debian packages from {os.path.basename(args.lock)}",
                     args.compression, file_digests=False)
    _write_json(os.path.join(args.out, INVENTORY), {"debian": [p.to_json() for p in base.packages]})


def locate_wheels(args: argparse.Namespace) -> None:
    """Where the lock's wheels for the platform are (out/wheels.json): the index names each pinned file."""
    from aegis_plugin.core.python import requirements_lock, simple_index

    with open(args.lock) as f:
        locked = requirements_lock.parse(f.read())
    found = simple_index.locate(locked, args.index, Interpreter(args.platform), os.path.basename(args.lock))
    os.makedirs(args.out, exist_ok=True)
    _write_json(os.path.join(args.out, WHEELS_INFO), [w.to_json() for w in found])


def deps_layer(args: argparse.Namespace) -> None:
    """The third-party layer, from the locked wheels the handler's requirements need on the platform, plus the
    lock subset and the list of what it installs."""
    from aegis_plugin.core.digests import file_digests
    from aegis_plugin.core.python import dependencies, markers, requirements_lock, site_packages, wheels

    lock_name = os.path.basename(args.lock)
    with open(args.lock) as f:
        locked = requirements_lock.parse(f.read())
    wheel_paths = {
        wheels.parse_name(name).name: os.path.join(args.wheels, name) for name in sorted(os.listdir(args.wheels))
    }
    needed = dependencies.closure(args.require, wheel_paths, Interpreter(args.platform), lock_name)
    requested = {markers.parse_requirement(r).name for r in args.require}
    installed_dir = tempfile.mkdtemp(prefix="installed-", dir=".")
    site_packages.install_wheels([wheel_paths[name] for name in needed], requested, installed_dir)
    dists = site_packages.distributions(installed_dir)
    lock_text = requirements_lock.subset(locked, {d.name: d.version for d in dists}, lock_name)
    installed = site_packages.build_site_packages(installed_dir, args.prefix)
    # The SBOM takes the distributions' files from their RECORDs: no per-file digests needed.
    _write_layer(installed.entries, args.out, 0, f"python distributions from {lock_name}", args.compression,
                 file_digests=False)
    with open(os.path.join(args.out, "requirements.lock"), "wb") as f:
        f.write(lock_text)
    hashes = {(r.name, r.version): r.hashes for r in locked}
    python = []
    for d in dists:
        parties = site_packages.declared_parties(installed_dir, d)
        wheel_sha256, wheel_sha512 = file_digests(os.path.join(args.wheels, d.wheel))
        python.append({
            "name": d.name, "version": d.version, "wheel": d.wheel, "hashes": sorted(hashes[d.name, d.version]),
            "license": site_packages.declared_license(installed_dir, d), "authors": list(parties.authors),
            "maintainers": list(parties.maintainers), "copyright": list(parties.copyright),
            "files": installed.files[d.wheel], "wheel_sha256": wheel_sha256, "wheel_sha512": wheel_sha512,
        })
    _write_json(os.path.join(args.out, INVENTORY), {"python": python})


def fetch(args: argparse.Namespace) -> None:
    """One file downloaded and checked against its pin, as out/<name>. The URL is part of this process's
    cache key, so one with credentials or a query string is refused (util_rules/download.py fetches those)."""
    from aegis_plugin.core import download as pinned_download

    if "/" in args.name or args.name in ("", ".", ".."):
        raise UserError(f"not a file name: {args.name!r}")
    if pinned_download.has_secrets(args.url):
        raise UserError(
            f"{pinned_download.redact_url(args.url)} carries credentials or a query string, which a cached "
            f"process must not be given: it is fetched by Pants instead (aegis_plugin/util_rules/download.py)"
        )
    pinned_download.download(args.url, args.sha256, args.size, os.path.join(args.out, args.name))


def pinned_files(args: argparse.Namespace) -> None:
    """The pinned files under in/, as out/<name>: the step through which registry files enter (and leave) the
    cache. Its key is the pins alone (the source URI and each file's sha256 and size, which are also the
    input's digest), so another machine's cache answers it without the files or their server; see
    util_rules/mlflow.py."""
    for name, _sha256, size in args.file:
        source, target = os.path.join("in", name), os.path.join(args.out, name)
        if os.path.getsize(source) != int(size):
            raise UserError(f"{name}: {os.path.getsize(source)} bytes, pinned {size}")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(source, target)
        os.chmod(target, 0o644)


def build_image(args: argparse.Namespace) -> None:
    """Config, manifest and index of one image: an OCI layout without the layer blobs, which the layer steps
    wrote under their layout names (the calling rule merges them in), but for the `top_layer` this step writes
    itself (the SBOM's: one process fewer on every edit). With `docker_archive`, also image.tar, a second full
    copy of every byte, from the layer blobs given as inputs."""
    spec = ImageSpec.from_json(_read_spec(args.spec))
    layer_dirs = list(spec.layers)
    if spec.top_layer is not None:  # a small layer written here, beside the out/ this step returns
        write_files_layer(spec.top_layer, TOP_LAYER_DIR)
        layer_dirs.append(TOP_LAYER_DIR)
    layers = []
    for layer_dir in layer_dirs:
        with open(os.path.join(layer_dir, LAYER_INFO)) as f:
            layers.append((layer_dir, json.load(f)))
    layer_blobs = {info["digest"]: layout.blob_path(layer_dir, info["digest"]) for layer_dir, info in layers}
    written_here = {info["digest"]: layer_blobs[info["digest"]] for layer_dir, info in layers
                    if layer_dir == TOP_LAYER_DIR}
    created = datetime.fromtimestamp(spec.created, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    config = image.build_config(
        architecture=spec.architecture,
        os=spec.os,
        diff_ids=[info["diff_id"] for _, info in layers],
        created=created,
        user=spec.user,
        env=list(spec.env),
        entrypoint=list(spec.entrypoint),
        working_dir=spec.working_dir,
        labels=dict(spec.labels),
        history=[{"created": created, "created_by": f"aegis: {info['description']}"} for _, info in layers],
    )
    config_desc = image.descriptor_for(image.MEDIA_TYPE_CONFIG, config)
    layer_descs = [
        image.Descriptor(media_type=info["media_type"], digest=info["digest"], size=info["size"])
        for _, info in layers
    ]
    annotations = {**spec.annotations, "org.opencontainers.image.created": created}
    manifest = image.build_manifest(config=config_desc, layers=layer_descs, annotations=annotations)
    platform = {"architecture": spec.architecture, "os": spec.os}
    manifest_desc = image.descriptor_for(image.MEDIA_TYPE_MANIFEST, manifest, platform=platform)
    image_entry = image.with_ref_name(manifest_desc, spec.ref_name)
    blobs = {config_desc.digest: config, manifest_desc.digest: manifest, **written_here}
    entries = [image_entry]
    artifact = None
    if spec.model_artifact is not None:
        artifact, artifact_blobs = _model_artifact(spec.model_artifact, dict(layers))
        blobs.update(artifact_blobs)
        entries.append(artifact)
    layout.write_layout(os.path.join(args.out, "oci"), blobs, image.build_index(entries),
                        external={info["digest"]: info["size"] for _, info in layers
                                  if info["digest"] not in written_here})
    if spec.docker_archive:
        with tempfile.TemporaryDirectory(dir=".") as complete:
            layout.write_layout(complete, {**blobs, **layer_blobs}, image.build_index([image_entry]))
            tarball.write_image_tar(os.path.join(args.out, "image.tar"), complete, list(spec.repo_tags),
                                    spec.created)
    summary = {
        "manifest_digest": manifest_desc.digest,
        "config_digest": config_desc.digest,
        "repo_tags": list(spec.repo_tags),
        "layers": [{"description": info["description"], "digest": info["digest"], "size": info["size"],
                    "media_type": info["media_type"]} for _, info in layers],
        "compressed_size": sum(info["size"] for _, info in layers),
        **({"model_artifact": {"manifest_digest": artifact.digest,
                               "ref_name": (artifact.annotations or {})[image.ANNOTATION_REF_NAME]}}
           if artifact is not None else {}),
    }
    with open(os.path.join(args.out, "image.json"), "w") as f:
        json.dump(summary, f, sort_keys=True, indent=2)
        f.write("\n")


def _model_artifact(spec: ModelArtifactSpec, infos: dict[str, dict]) -> tuple[image.Descriptor, dict[str, bytes]]:
    """The ModelPack artifact's index entry and its config and manifest blobs: its layers are the image's own
    blobs (`infos`: layer directory -> layer.json), referenced under the media types of their kinds."""
    layers, diff_ids = [], []
    for item in spec.layers:
        if item.layer not in infos:
            raise SpecError(f"spec.model_artifact: layer {item.layer!r} is not one of the image's layers")
        info = infos[item.layer]
        layers.append(image.Descriptor(
            media_type=modelpack.layer_media_type(item.kind, info["media_type"]), digest=info["digest"],
            size=info["size"], annotations={modelpack.ANNOTATION_FILEPATH: item.filepath},
        ))
        diff_ids.append(info["diff_id"])
    config = modelpack.build_config(spec.descriptor, spec.config, diff_ids)
    config_desc = image.descriptor_for(modelpack.MEDIA_TYPE_CONFIG, config)
    manifest = modelpack.build_manifest(config_desc, layers, spec.annotations)
    entry = image.descriptor_for(image.MEDIA_TYPE_MANIFEST, manifest, artifact_type=modelpack.ARTIFACT_TYPE)
    return image.with_ref_name(entry, spec.ref_name), {config_desc.digest: config, entry.digest: manifest}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aegis-core")
    commands = parser.add_subparsers(dest="command", required=True)
    cmd = commands.add_parser("files-layer")
    cmd.add_argument("--spec", required=True)
    cmd.set_defaults(run=files_layer)
    cmd = commands.add_parser("debian-layer")
    cmd.add_argument("--lock", required=True)
    cmd.add_argument("--debs", required=True)
    cmd.add_argument("--arch", required=True, help="the Debian architecture of the image, e.g. arm64")
    cmd.add_argument("--compression", default="gzip", choices=LAYER_COMPRESSIONS)
    cmd.set_defaults(run=debian_layer)
    cmd = commands.add_parser("locate-wheels")
    cmd.add_argument("--lock", required=True)
    cmd.add_argument("--index", required=True, help="a PEP 691 package index, e.g. Pants' [python-repos].indexes")
    cmd.add_argument("--platform", required=True, choices=sorted(MACHINES))
    cmd.set_defaults(run=locate_wheels)
    cmd = commands.add_parser("deps-layer")
    cmd.add_argument("--wheels", required=True, help="a directory of the located wheels (locate-wheels)")
    cmd.add_argument("--require", action="append", default=[], help="a requirement of the handler (repeatable)")
    cmd.add_argument("--platform", required=True, choices=sorted(MACHINES))
    cmd.add_argument("--lock", required=True)
    cmd.add_argument("--prefix", required=True)
    cmd.add_argument("--compression", default="gzip", choices=LAYER_COMPRESSIONS)
    cmd.set_defaults(run=deps_layer)
    cmd = commands.add_parser("fetch")
    cmd.add_argument("--url", required=True)
    cmd.add_argument("--sha256", required=True)
    cmd.add_argument("--size", required=True, type=int)
    cmd.add_argument("--name", required=True)
    cmd.set_defaults(run=fetch)
    cmd = commands.add_parser("pinned-files")
    cmd.add_argument("--source", required=True, help="where the files come from (e.g. an MLflow model URI)")
    cmd.add_argument("--file", nargs=3, action="append", required=True, metavar=("NAME", "SHA256", "SIZE"))
    cmd.set_defaults(run=pinned_files)
    cmd = commands.add_parser("image")
    cmd.add_argument("--spec", required=True)
    cmd.set_defaults(run=build_image)
    for sub in commands.choices.values():
        sub.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except AegisError as e:  # UserError, and the packages' own errors (DebianError, DownloadError, …)
        print(f"aegis: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
