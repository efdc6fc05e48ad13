"""Which git revision a model package is built from.

The revision is the newest commit that touched any of the package's input files, not HEAD: a commit
elsewhere in the monorepo must not change the image (and so rebuild every model). Its commit time is the
timestamp of every layer entry and of the image, which makes the image a function of its sources.
"""
from __future__ import annotations

from dataclasses import dataclass

from pants.base.build_environment import get_buildroot
from pants.engine.rules import _uncacheable_rule, collect_rules
from pants.vcs.git import GitBinaryException, MaybeGitBinary

from aegis_plugin.util_rules.core_process import AegisBuildError



@dataclass(frozen=True)
class SourceRevisionRequest:
    """`paths` are the input files, relative to the buildroot.

    Symlinks pointing outside the repository need no check here: Pants refuses to read any directory
    holding one ("Absolute symlink" / "Globs may not traverse outside of the buildroot").
    """

    context: str
    paths: tuple[str, ...]


@dataclass(frozen=True)
class SourceRevision:
    git_sha: str  # 40 hex digits, with a `-dirty` suffix when an input differs from that commit
    commit_time: int  # seconds since the epoch (the commit's committer time)

    @property
    def dirty(self) -> bool:
        return self.git_sha.endswith("-dirty")


# Uncacheable: git state changes without any file Pants watches changing, so it is read once per run.
@_uncacheable_rule
async def resolve_source_revision(
    request: SourceRevisionRequest, maybe_git: MaybeGitBinary
) -> SourceRevision:
    buildroot = get_buildroot()
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
        # Inputs never committed (a new model): stamp them as a dirty change on top of HEAD.
        try:
            log = git._invoke_unsandboxed([*base, "log", "-1", "--format=%H %ct", "HEAD"]).strip()
        except GitBinaryException:
            log = ""
        if not log:
            raise AegisBuildError(f"{request.context}: the repository has no commits yet; commit the model first")
        status = status or "uncommitted"
    sha, commit_time = log.split()
    if status:
        sha = f"{sha}-dirty"
    return SourceRevision(git_sha=sha, commit_time=int(commit_time))


def rules():
    return collect_rules()
