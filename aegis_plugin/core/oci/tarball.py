"""One image tarball that both `docker load` and OCI tools accept.

The archive is an OCI layout (oci-layout, index.json, blobs/sha256/...) plus
a docker-archive `manifest.json` naming the same blobs, as `docker save`
does since Docker 25.  Docker's classic image store reads manifest.json;
its containerd image store (and containerd itself) read index.json and take
image names from the `io.containerd.image.name` annotation, so index.json
gets one descriptor per repo tag.  Both point at the layout's manifest, so
the manifest digest is unchanged.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Dict, Sequence, Tuple, Union

from aegis_plugin.core.oci.image import (
    MEDIA_TYPE_MANIFEST,
    Descriptor,
    build_index,
    canonical_json,
    check_digest,
    parse_descriptor,
    with_annotations,
    with_ref_name,
)
from aegis_plugin.core.oci.layer import LayerEntry, write_tar
from aegis_plugin.core.oci.layout import (
    INDEX_FILE,
    OCI_LAYOUT_CONTENT,
    OCI_LAYOUT_FILE,
    blob_path,
    read_index,
)

ANNOTATION_CONTAINERD_IMAGE_NAME = "io.containerd.image.name"
FILE_MODE = 0o644

# Docker reference grammar (distribution/reference), enough to normalize tags.
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}")
_PATH_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN_RE = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?"
)


def normalize_repo_tag(repo_tag: str) -> Tuple[str, str]:
    """Returns (fully qualified name, tag), e.g. "app:1" -> ("docker.io/library/app:1", "1")."""
    if "@" in repo_tag:
        raise ValueError(f"repo tag must not contain a digest: {repo_tag!r}")
    name, tag = repo_tag, "latest"
    colon = repo_tag.rfind(":")
    if colon > repo_tag.rfind("/"):
        name, tag = repo_tag[:colon], repo_tag[colon + 1 :]
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        domain, path = first, rest
    else:
        domain, path = "docker.io", name
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in path:
        path = "library/" + path
    valid = (
        _TAG_RE.fullmatch(tag)
        and _DOMAIN_RE.fullmatch(domain)
        and all(_PATH_COMPONENT_RE.fullmatch(c) for c in path.split("/"))
        and len(domain) + 1 + len(path) <= 255
    )
    if not valid:
        raise ValueError(f"invalid repo tag {repo_tag!r}")
    return f"{domain}/{path}:{tag}", tag


def _single_manifest(index: Dict[str, Any]) -> Descriptor:
    descriptors = [parse_descriptor(m) for m in index.get("manifests", [])]
    digests = {d.digest for d in descriptors}
    if len(digests) != 1 or descriptors[0].media_type != MEDIA_TYPE_MANIFEST:
        raise ValueError(
            "a docker-loadable tarball needs a layout whose index.json lists exactly one "
            f"image manifest; found {sorted(digests)}"
        )
    return descriptors[0]


def write_image_tar(
    out_path: Union[str, os.PathLike[str]],
    layout_dir: Union[str, os.PathLike[str]],
    repo_tags: Sequence[str],
    mtime: int,
) -> None:
    """Packs a single-image layout into a deterministic, uncompressed tar.

    All blobs of the layout are included.  With `repo_tags`, index.json lists
    the manifest once per tag (ref name = the tag part); without, the
    layout's index.json is kept as is.
    """
    index = read_index(layout_dir)
    manifest_desc = _single_manifest(index)
    with open(blob_path(layout_dir, manifest_desc.digest), "rb") as f:
        manifest = json.loads(f.read())
    config_digest = manifest["config"]["digest"]
    layer_digests = [layer["digest"] for layer in manifest["layers"]]

    def member(digest: str) -> str:
        check_digest(digest)
        return "blobs/sha256/" + digest[len("sha256:") :]

    docker_manifest = [
        {
            "Config": member(config_digest),
            "RepoTags": list(repo_tags),
            "Layers": [member(d) for d in layer_digests],
        }
    ]

    if repo_tags:
        tagged = []
        for repo_tag in repo_tags:
            full_name, tag = normalize_repo_tag(repo_tag)
            desc = with_ref_name(manifest_desc, tag)
            tagged.append(with_annotations(desc, {ANNOTATION_CONTAINERD_IMAGE_NAME: full_name}))
        index_json = build_index(tagged, annotations=index.get("annotations"))
    else:
        index_json = canonical_json(index)

    blobs_dir = os.path.join(os.fspath(layout_dir), "blobs", "sha256")
    for digest in [config_digest, *layer_digests]:
        if not os.path.isfile(blob_path(layout_dir, digest)):
            raise ValueError(f"layout {layout_dir} lacks blob {digest}")

    def file_entry(path: str, **content: Any) -> LayerEntry:
        return LayerEntry(path=path, kind="file", mode=FILE_MODE, **content)

    entries = [
        file_entry("/" + OCI_LAYOUT_FILE, data=OCI_LAYOUT_CONTENT),
        file_entry("/" + INDEX_FILE, data=index_json),
        file_entry("/manifest.json", data=canonical_json(docker_manifest)),
    ]
    for name in os.listdir(blobs_dir):
        check_digest("sha256:" + name)  # refuse stray files rather than pack them
        entries.append(file_entry("/blobs/sha256/" + name, source=os.path.join(blobs_dir, name)))

    try:
        with open(out_path, "wb") as out:
            write_tar(entries, out, mtime)  # sorts; adds blobs/ and blobs/sha256/ as 0o755
    except BaseException:
        os.remove(out_path)  # never leave a truncated archive behind
        raise
