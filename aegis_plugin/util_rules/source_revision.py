"""Which git revision a model package is built from.

The revision is the newest commit that touched any of the package's input files, not HEAD: a commit
elsewhere in the monorepo must not change the image (and so rebuild every model). Its commit time is the
timestamp of every layer entry and of the image, which makes the image a function of its sources.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from pants.base.build_environment import get_buildroot
from pants.engine.rules import _uncacheable_rule, collect_rules
from pants.vcs.git import GitBinaryException, MaybeGitBinary

from aegis_plugin.util_rules.core_process import AegisBuildError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceRevisionRequest:
    """`paths` are the package's input files relative to the buildroot; `scan_dir` is checked for links."""

    context: str
    paths: tuple[str, ...]
    scan_dir: str


@dataclass(frozen=True)
class SourceRevision:
    git_sha: str  # 40 hex digits, with a `-dirty` suffix when an input differs from that commit
    commit_time: int  # seconds since the epoch (the commit's committer time)

    @property
    def dirty(self) -> bool:
        return self.git_sha.endswith("-dirty")


def find_escaping_symlinks(buildroot: str, scan_dir: str) -> list[str]:
    """Symlinks under `scan_dir` that point outside the repository: their content is not versioned."""
    root = os.path.realpath(buildroot)
    escaping = []
    for dirpath, dirnames, filenames in os.walk(os.path.join(buildroot, scan_dir)):
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                target = os.path.realpath(path)
                if os.path.commonpath([root, target]) != root:
                    escaping.append(f"{os.path.relpath(path, buildroot)} -> {os.readlink(path)}")
    return sorted(escaping)


# Uncacheable: git state changes without any file Pants watches changing, so it is read once per run.
@_uncacheable_rule
async def resolve_source_revision(
    request: SourceRevisionRequest, maybe_git: MaybeGitBinary
) -> SourceRevision:
    buildroot = get_buildroot()
    escaping = find_escaping_symlinks(buildroot, request.scan_dir)
    if escaping:
        raise AegisBuildError(
            f"{request.context}: the model directory has symlinks pointing outside the repository, whose "
            f"content git does not pin: {', '.join(escaping)}; copy the files in instead"
        )
    git = maybe_git.git_binary
    if git is None:
        raise AegisBuildError(f"{request.context}: `git` was not found; Aegis stamps images with the revision")
    paths = sorted(set(request.paths))
    base = ["-C", buildroot]
    try:
        log = git._invoke_unsandboxed(
            [*base, "log", "-1", "--format=%H %ct", "--", *paths]
        ).strip()
        status = git._invoke_unsandboxed(
            [*base, "status", "--porcelain", "--untracked-files=all", "--", *paths]
        ).strip()
    except GitBinaryException as e:
        raise AegisBuildError(f"{request.context}: reading the git revision failed: {e}")
    if not log:
        raise AegisBuildError(
            f"{request.context}: none of the package's inputs is committed to git yet; commit them first"
        )
    sha, commit_time = log.split()
    if status:
        logger.warning(f"{request.context}: inputs differ from commit {sha[:12]}; marking the image dirty")
        sha = f"{sha}-dirty"
    return SourceRevision(git_sha=sha, commit_time=int(commit_time))


def rules():
    return collect_rules()
