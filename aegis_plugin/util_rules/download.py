"""`http_source` model files downloaded by a cacheable process, so the remote cache serves them.

Pants 2.17 downloads `http_source` files itself, outside any process: the remote cache never holds them, and
every clean machine would fetch multi-gigabyte weights from their origin again. As a process keyed by the
pin (url, sha256, size), the download is an ordinary action: a machine whose cache has the action result
builds the model layer from the cache without fetching the weights at all. (Never in argv: credentials.
Origins that need them belong behind a URL the build can read without.)
"""
from __future__ import annotations

from dataclasses import dataclass

from pants.core.target_types import http_source
from pants.engine.fs import Digest, EMPTY_DIGEST, RemovePrefix
from pants.engine.rules import Get, collect_rules, rule

from aegis_plugin.util_rules.core_process import CoreCommand, CoreProcess, CoreResult


@dataclass(frozen=True)
class PinnedDownloadRequest:
    context: str  # e.g. "models/x:x: field `weights` (models/x:weights)"
    source: http_source


@dataclass(frozen=True)
class PinnedDownload:
    digest: Digest  # the one file, named `source.filename`


@rule(desc="Downloading a pinned file")
async def download_pinned(request: PinnedDownloadRequest) -> PinnedDownload:
    source = request.source
    result = await Get(
        CoreResult,
        CoreProcess(
            CoreCommand.FETCH,
            ("--url", source.url, "--sha256", source.sha256, "--size", str(source.len), "--name", source.filename),
            EMPTY_DIGEST,
            description=f"Downloading {source.url}",
            error_context=request.context,
        ),
    )
    return PinnedDownload(await Get(Digest, RemovePrefix(result.output_digest, "out")))


def rules():
    return collect_rules()
