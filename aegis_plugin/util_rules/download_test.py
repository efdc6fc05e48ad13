"""The pinned download rule: a URL with credentials or a signed query string reaches no process (the cache
key), no description and no error message; a plain URL is still a cacheable process."""
from __future__ import annotations

import base64
import hashlib

import pytest

from pants.backend.python import register as python_backend
from pants.core import register as core_backend
from pants.core.target_types import http_source
from pants.engine.fs import (
    CreateDigest,
    Digest,
    DigestContents,
    DigestEntries,
    EMPTY_DIGEST,
    FileDigest,
    FileEntry,
    NativeDownloadFile,
    RemovePrefix,
)
from pants.engine.internals.scheduler import ExecutionError
from pants.testutil.rule_runner import MockGet, QueryRule, RuleRunner, run_rule_with_mocks

from aegis_plugin import register as aegis_backend
from aegis_plugin.testutil.local_servers import serving_guarded_file
from aegis_plugin.util_rules.core_process import CoreCommand, CoreProcess, CoreResult
from aegis_plugin.util_rules.download import PinnedDownload, PinnedDownloadRequest, download_pinned

CONTENT = b"pinned weights" * 100
SHA256 = hashlib.sha256(CONTENT).hexdigest()
USER, PASSWORD, SIGNATURE = "deploy-bot", "s3cr3t-pa55", "f00dfeedcafe1234"
QUERY = f"X-Amz-Signature={SIGNATURE}&X-Amz-Credential=AKIAEXAMPLE%2F20240101"
SECRETS = (USER, PASSWORD, SIGNATURE, "AKIAEXAMPLE")
CONTEXT = "m:m: field `weights` (m:weights)"


def run(source: http_source, requested: list) -> PinnedDownload:
    """The rule with every request it makes recorded in `requested`, each answered by a stand-in."""
    def answer(value, result):
        requested.append(value)
        return result

    file = FileEntry("w", FileDigest(SHA256, len(CONTENT)))
    return run_rule_with_mocks(
        download_pinned,
        rule_args=[PinnedDownloadRequest(CONTEXT, source)],
        mock_gets=[
            MockGet(CoreResult, (CoreProcess,), lambda p: answer(p, CoreResult(EMPTY_DIGEST))),
            MockGet(Digest, (RemovePrefix,), lambda r: answer(r, EMPTY_DIGEST)),
            MockGet(Digest, (NativeDownloadFile,), lambda d: answer(d, EMPTY_DIGEST)),
            MockGet(DigestEntries, (Digest,), lambda d: answer(d, DigestEntries([file]))),
            MockGet(Digest, (CreateDigest,), lambda c: answer(c, EMPTY_DIGEST)),
        ],
    )


def test_a_plain_url_is_a_cacheable_process() -> None:
    requested: list = []
    run(http_source("https://host/m/w.safetensors", len=len(CONTENT), sha256=SHA256), requested)
    process = requested[0]
    assert isinstance(process, CoreProcess) and process.command == CoreCommand.FETCH
    assert process.argv == ("--url", "https://host/m/w.safetensors", "--sha256", SHA256, "--size",
                            str(len(CONTENT)), "--name", "w.safetensors")
    assert process.description == "Downloading https://host/m/w.safetensors"


def test_a_url_with_secrets_reaches_no_process() -> None:
    requested: list = []
    url = f"https://{USER}:{PASSWORD}@bucket.example/m/w?{QUERY}"
    run(http_source(url, len=len(CONTENT), sha256=SHA256, filename="weights.safetensors"), requested)
    (download,) = [r for r in requested if isinstance(r, NativeDownloadFile)]
    # Pants fetches the signed URL itself, with the credentials as a header (not in its cache key).
    assert download.url == f"https://bucket.example/m/w?{QUERY}"
    assert dict(download.auth_headers) == {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
    assert download.expected_digest == FileDigest(SHA256, len(CONTENT))
    assert not [r for r in requested if isinstance(r, CoreProcess)]  # no process: no cache key, no description
    others = [r for r in requested if not isinstance(r, NativeDownloadFile)]
    assert others and not [s for s in SECRETS for r in others if s in repr(r)]
    (create,) = [r for r in requested if isinstance(r, CreateDigest)]
    assert [e.path for e in create] == ["weights.safetensors"]


# The real thing: Pants' downloader against a server on 127.0.0.1.
@pytest.fixture(scope="module")
def origin():
    """Serves CONTENT at /w.bin to requests carrying USER:PASSWORD and QUERY; else 403 (404 elsewhere)."""
    with serving_guarded_file("/w.bin", CONTENT, USER, PASSWORD, QUERY) as port:
        yield f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def rule_runner() -> RuleRunner:
    rule_runner = RuleRunner(
        rules=[
            *core_backend.rules(),
            *python_backend.rules(),
            *aegis_backend.rules(),
            QueryRule(PinnedDownload, [PinnedDownloadRequest]),
            QueryRule(DigestContents, [Digest]),
        ],
    )
    rule_runner.set_options([], env_inherit={"PATH"})
    return rule_runner


def test_credentials_and_a_signed_query_are_used(rule_runner: RuleRunner, origin: str) -> None:
    url = f"http://{USER}:{PASSWORD}@{origin}/w.bin?{QUERY}"
    source = http_source(url, len=len(CONTENT), sha256=SHA256, filename="weights.safetensors")
    result = rule_runner.request(PinnedDownload, [PinnedDownloadRequest(CONTEXT, source)])
    (file,) = rule_runner.request(DigestContents, [result.digest])
    assert (file.path, file.content) == ("weights.safetensors", CONTENT)


def test_a_failed_download_names_no_secret(rule_runner: RuleRunner, origin: str) -> None:
    url = f"http://{USER}:wrong-{PASSWORD}@{origin}/w.bin?{QUERY}"
    # Pinned to bytes no store holds, so that Pants must ask the origin (a stored digest is not fetched again).
    other = b"other weights"
    source = http_source(url, len=len(other), sha256=hashlib.sha256(other).hexdigest(), filename="weights.safetensors")
    with pytest.raises(ExecutionError) as e:
        rule_runner.request(PinnedDownload, [PinnedDownloadRequest(CONTEXT, source)])
    message = str(e.value)
    assert (f"{CONTEXT}: cannot download http://***@{origin}/w.bin?X-Amz-Signature=***&X-Amz-Credential=***: "
            f"Client error (403) downloading file w.bin from http://{origin}/w.bin?"
            "X-Amz-Signature=***&X-Amz-Credential=***") in message, message
    assert not [s for s in SECRETS if s in message], message
