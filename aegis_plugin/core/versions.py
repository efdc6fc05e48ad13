"""Checks on the names users write in BUILD files: versions, accelerators, image references.

They live in the core so that the target fields (at BUILD-parse time) and the core processes share one
definition, and so they are testable without Pants.
"""
from __future__ import annotations

import re

# The grammar from semver.org 2.0.0 (no leading zeros, optional pre-release and build metadata).
_NUM = r"(?:0|[1-9]\d*)"
_PRE_ID = r"(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
_SEMVER = re.compile(
    rf"^{_NUM}\.{_NUM}\.{_NUM}(?:-{_PRE_ID}(?:\.{_PRE_ID})*)?(?:\+[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*)?$"
)
_MODEL_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
_ACCELERATOR = re.compile(r"^(?:cpu|cuda-\d+\.\d+)$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# OCI distribution-spec repository and tag grammar.
_REPOSITORY = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::\d+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


def is_semver(version: str) -> bool:
    return bool(_SEMVER.match(version))


def is_model_id(value: str) -> bool:
    return bool(_MODEL_ID.match(value))


def is_accelerator(value: str) -> bool:
    return bool(_ACCELERATOR.match(value))


def is_sha256_digest(value: str) -> bool:
    return bool(_DIGEST.match(value))


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
    if not _REPOSITORY.match(repository):
        return f"{repository!r} is not a valid repository name (lowercase path components, optional registry host)"
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
    if not _TAG.match(tag):
        return f"{tag!r} is not a valid OCI tag"
    return None
