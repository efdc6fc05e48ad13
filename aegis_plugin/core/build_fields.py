"""Checks on what users write in BUILD files: versions, accelerators, image names and annotations.

They live in the core so that the target fields (at BUILD-parse time) and the core processes share one
definition, and so they are testable without Pants.
"""
from __future__ import annotations

import re
from typing import Mapping

# The grammar from semver.org 2.0.0 (no leading zeros, optional pre-release and build metadata).
_NUM = r"(?:0|[1-9]\d*)"
_PRE_ID = r"(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
_SEMVER = re.compile(
    rf"^{_NUM}\.{_NUM}\.{_NUM}(?:-{_PRE_ID}(?:\.{_PRE_ID})*)?(?:\+[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*)?$"
)
_ACCELERATOR = re.compile(r"^(?:cpu|cuda-\d+\.\d+)$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# OCI distribution-spec names: a repository is path components joined by `/`, after an optional registry host
# (a first component with a `.` or a `:`, `localhost`, or capitals, as docker's reference parser decides).
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_HOST_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_HOST = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*(?::[0-9]+)?")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
MAX_NAME_LENGTH = 255  # host, `/` and path together, as distribution/reference and docker count them
MAX_TAG_LENGTH = 128
MAX_MODEL_ID_LENGTH = 128
# A name without a host is read as a Docker Hub name (`docker load`, image.tar): its length counts that way.
_IMPLICIT_HOST = "docker.io"


def is_semver(version: str) -> bool:
    return bool(_SEMVER.fullmatch(version))


def is_model_id(value: str) -> bool:
    """A model id is one repository path component, so that `aegis/<model_id>` is always a valid name."""
    return len(value) <= MAX_MODEL_ID_LENGTH and bool(_COMPONENT.fullmatch(value))


def check_version(version: str) -> str | None:
    """Returns why `version` cannot be a model version, which is also the image's tag, or None."""
    if not is_semver(version):
        return f"{version!r} is not a semantic version (MAJOR.MINOR.PATCH, e.g. `1.0.0`)"
    release, _, build = version.partition("+")
    if build:
        # A tag cannot hold `+`; mapping it to `_` would make two names for one version, and semver ignores
        # build metadata when ordering, so `1.0.0+a` and `1.0.0+b` would be two immutable tags of one version.
        return (
            f"{version!r} has build metadata (`+{build}`), which an image tag cannot carry: write {release!r} "
            "(the image records its git revision already)"
        )
    if len(version) > MAX_TAG_LENGTH:
        return f"{version!r} is {len(version)} characters long; it is the image's tag, at most {MAX_TAG_LENGTH}"
    return None


def is_accelerator(value: str) -> bool:
    return bool(_ACCELERATOR.fullmatch(value))


def is_sha256_digest(value: str) -> bool:
    return bool(_DIGEST.fullmatch(value))


def is_git_sha(value: str) -> bool:
    """A full git commit id: 40 lowercase hex digits."""
    return len(value) == 40 and all(c in "0123456789abcdef" for c in value)


def is_floating_tag(tag: str) -> bool:
    """`latest` (in any case) names whatever was pushed last: never a pin."""
    return tag.lower() == "latest"


def check_repository(repository: str) -> str | None:
    """Returns why `repository` is unusable as an image repository (no tag, no digest), or None."""
    if "@" in repository:
        return f"{repository!r} carries a digest; give the repository only (e.g. `registry.example.com/models/fraud`)"
    last = repository.rsplit("/", 1)[-1]
    if ":" in last:
        return (
            f"{repository!r} carries a tag; give the repository only: images are tagged with their `version`"
            + (", never `latest`" if is_floating_tag(last.split(":", 1)[1]) else "")
        )
    first, slash, rest = repository.partition("/")
    names_host = bool(slash) and ("." in first or ":" in first or first == "localhost" or first != first.lower())
    host, path = (first, rest) if names_host else (None, repository)
    if host is not None and not _HOST.fullmatch(host):
        return f"{_clip(repository)} is not a valid repository name: {_clip(host)} is not a `host[:port]`"
    for component in path.split("/"):
        if not _COMPONENT.fullmatch(component):
            return (
                f"{_clip(repository)} is not a valid repository name: {_clip(component)} must be lowercase "
                "letters and digits separated by `.`, `_`, `__` or dashes"
            )
    full = repository if host else f"{_IMPLICIT_HOST}/{'' if '/' in path else 'library/'}{path}"
    if len(full) > MAX_NAME_LENGTH:
        counted = "" if host else f" (with the `{full[: -len(path)]}` that a name without registry host gets)"
        return (
            f"{_clip(repository)} is not a valid repository name: {len(full)} characters long{counted}, "
            f"at most {MAX_NAME_LENGTH}"
        )
    return None


def check_pinned_reference(reference: str) -> str | None:
    """Returns why an image reference is not pinned by digest, or None when it is `name@sha256:<hex>`."""
    name, sep, digest = reference.partition("@")
    if not sep:
        head, _, last = name.rpartition("/")
        repo, _, tag = last.partition(":")
        bare = f"{head}/{repo}" if head else repo
        return (
            f"{reference!r} is given by tag {tag or 'latest'!r}, which can move; pin it by digest "
            f"(`{bare}@sha256:<hex>`)"
        )
    if not is_sha256_digest(digest):
        return f"{reference!r} has a malformed digest; expected `@sha256:` followed by 64 lowercase hex digits"
    return None


def check_tag(tag: str) -> str | None:
    if is_floating_tag(tag):
        return f"the tag {tag!r} floats; tags are immutable versions here"
    if not _TAG.fullmatch(tag):
        return f"{tag!r} is not a valid OCI tag ([A-Za-z0-9_][A-Za-z0-9._-], at most {MAX_TAG_LENGTH} characters)"
    return None



MAX_ANNOTATIONS = 64
MAX_ANNOTATION_KEY_LENGTH = 128
MAX_ANNOTATION_VALUE_BYTES = 4096
MAX_ANNOTATIONS_BYTES = 65536  # keys and values together (UTF-8): they go into both the manifest and the config
_ANNOTATION_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
# Keys Aegis writes itself, with where their value comes from: a user's value would be overwritten, or, for
# the keys tools read as the image's name or tag, would re-tag it (`ref.name: latest`) behind `version`'s back.
RESERVED_ANNOTATIONS = {
    "org.opencontainers.image.ref.name": "`version` (it is the tag)",
    "org.opencontainers.image.title": "`model_id`",
    "org.opencontainers.image.version": "`version`",
    "org.opencontainers.image.revision": "the source revision",
    "org.opencontainers.image.source": "`[aegis].source_url`",
    "org.opencontainers.image.created": "the source revision's commit time",
}
# containerd and Docker's containerd image store take image names and tags from `io.containerd.image.name`.
RESERVED_ANNOTATION_PREFIXES = {"io.containerd.": "`repository` and `version` (the image's name and tag)"}


def _clip(text: str, limit: int = 60) -> str:
    """repr of `text`, shortened: an error line must stay one readable line whatever was written."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "…"


def check_annotations(annotations: Mapping[str, str]) -> str | None:
    """Returns why `annotations` cannot go on an image, or None. The limits keep manifests far below what
    registries (4 MiB) and the contract test's unpacker (8 MiB) accept."""
    if len(annotations) > MAX_ANNOTATIONS:
        return f"{len(annotations)} annotations, at most {MAX_ANNOTATIONS}"
    total = 0
    for key, value in sorted(annotations.items()):
        origin = RESERVED_ANNOTATIONS.get(key) or next(
            (o for prefix, o in RESERVED_ANNOTATION_PREFIXES.items() if key.startswith(prefix)), None
        )
        if origin:
            return f"{key!r} is set by Aegis from {origin}; remove it"
        if len(key) > MAX_ANNOTATION_KEY_LENGTH or not _ANNOTATION_KEY.fullmatch(key):
            return (
                f"{_clip(key)} is not an annotation key: letters, digits, `.`, `_`, `-` and `/`, at most "
                f"{MAX_ANNOTATION_KEY_LENGTH} characters, e.g. `com.example.team`"
            )
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > MAX_ANNOTATION_VALUE_BYTES:
            return f"the value of {key!r} is {size} bytes, at most {MAX_ANNOTATION_VALUE_BYTES}"
        total += len(key) + size
    if total > MAX_ANNOTATIONS_BYTES:
        return f"the annotations' keys and values are {total} bytes, at most {MAX_ANNOTATIONS_BYTES} in all"
    return None
