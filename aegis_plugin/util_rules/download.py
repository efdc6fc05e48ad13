"""`http_source` model files: downloaded by a cacheable process, so the remote cache serves them; or, when the
URL carries secrets, by Pants itself, so that no cache key and no message holds them.

Pants 2.17 downloads `http_source` files itself, outside any process: the remote cache never holds them, and
every clean machine would fetch multi-gigabyte weights from their origin again. As a process keyed by the
pin (url, sha256, size), the download is an ordinary action: a machine whose cache has the action result
builds the model layer from the cache without fetching the weights at all.

A process's argv, env and input files are all its cache key, and the remote cache stores that key in the
clear (the REAPI Command message); a debug log (`-ldebug`) and `--keep-sandboxes` print it too. So a URL
with userinfo or a query string (`https://user:token@host/w`, `...?X-Amz-Signature=...`, `?sig=`,
`?token=`: see `aegis_plugin.core.download.has_secrets`; any query counts) never becomes a process. Pants'
own downloader fetches it (`NativeDownloadFile`): its result is content-addressed by the pinned sha256 and
size, the userinfo travels as a Basic `Authorization` header (which Pants keeps out of its download cache
key), and its error is rewritten with the URL redacted. An uncacheable process (`ProcessCacheScope.
PER_SESSION`) was the other choice; it was rejected because the secret would still be its argv: in debug
logs, in kept sandboxes' scripts, and sent to a remote executor.

What this costs and what stays: the download of a secret-bearing URL is not served by the remote cache (a
cold machine fetches it from the origin, as Pants does for any `http_source`), while every step built from
the file (the model layer, the image) is cached as before, since their keys hold the file's digest only.
Pants itself still knows the URL it fetches: its debug-level "Downloading: <url>" line shows the query
string (never the userinfo), and its local (never remote) download cache is keyed by that URL and the digest.
"""
from __future__ import annotations

from dataclasses import dataclass

from pants.core.target_types import http_source
from pants.engine.fs import (
    CreateDigest,
    Digest,
    DigestEntries,
    EMPTY_DIGEST,
    FileDigest,
    FileEntry,
    NativeDownloadFile,
    RemovePrefix,
)
from pants.engine.rules import Get, collect_rules, rule

from aegis_plugin.core.download import has_secrets, redact_text, redact_url, split_credentials
from aegis_plugin.util_rules.core_process import AegisBuildError, CoreCommand, CoreProcess, CoreResult


@dataclass(frozen=True)
class PinnedDownloadRequest:
    context: str  # e.g. "models/x:x: field `weights` (models/x:weights)"
    source: http_source


@dataclass(frozen=True)
class PinnedDownload:
    digest: Digest  # the one file, named `source.filename`


def native_download_request(source: http_source) -> NativeDownloadFile:
    """Pants' own download of `source`: the URL without its userinfo, which becomes a Basic header."""
    url, headers = split_credentials(source.url)
    return NativeDownloadFile(url, FileDigest(source.sha256, source.len), headers)


@rule(desc="Downloading a pinned file")
async def download_pinned(request: PinnedDownloadRequest) -> PinnedDownload:
    source = request.source
    if not has_secrets(source.url):
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

    try:
        downloaded = await Get(Digest, NativeDownloadFile, native_download_request(source))
    except Exception as e:  # Pants' message quotes the URL
        reason = (str(e).strip().splitlines() or [type(e).__name__])[-1]
        raise AegisBuildError(
            f"{request.context}: cannot download {redact_url(source.url)}: {redact_text(reason, source.url)}"
        ) from None
    # Pants names the file after the URL's last segment; the model layer expects `source.filename`.
    (entry,) = [e for e in await Get(DigestEntries, Digest, downloaded) if isinstance(e, FileEntry)]
    renamed = await Get(Digest, CreateDigest([FileEntry(source.filename, entry.file_digest)]))
    return PinnedDownload(renamed)


def rules():
    return collect_rules()
