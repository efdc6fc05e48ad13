"""The locked-wheels rule with mocked processes and downloads: what it asks the index for, and what it refuses."""
from __future__ import annotations

import json

import pytest

from pants.backend.python.subsystems.repos import PythonRepos
from pants.backend.python.subsystems.setup import PythonSetup
from pants.engine.fs import (
    EMPTY_DIGEST, AddPrefix, Digest, DigestContents, DigestSubset, FileContent, MergeDigests, PathGlobs,
)
from pants.testutil.option_util import create_subsystem
from pants.testutil.rule_runner import MockGet, run_rule_with_mocks

from aegis_plugin.util_rules.core_process import AegisBuildError, CoreProcess, CoreResult
from aegis_plugin.util_rules.download import PinnedDownload, PinnedDownloadRequest
from aegis_plugin.util_rules.layers import LockedWheels, LockedWheelsRequest, locked_wheels

LOCK = "3rdparty/python/runtime.lock"
WHEEL = {"name": "numpy", "version": "2.4.6", "filename": "numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl",
         "url": "https://files.example.invalid/n/numpy.whl", "sha256": "a" * 64, "size": 7}


def run(indexes: list[str], seen: dict) -> LockedWheels:
    def core(process: CoreProcess) -> CoreResult:
        seen["argv"] = process.argv
        return CoreResult(EMPTY_DIGEST)

    def download(request: PinnedDownloadRequest) -> PinnedDownload:
        seen.setdefault("downloads", []).append(request.source)
        return PinnedDownload(EMPTY_DIGEST)

    return run_rule_with_mocks(
        locked_wheels,
        rule_args=[
            LockedWheelsRequest("models/fraud:fraud: field `handler`", "runtime", "linux/arm64"),
            create_subsystem(PythonSetup, resolves={"runtime": LOCK}),
            create_subsystem(PythonRepos, indexes=indexes),
        ],
        mock_gets=[
            MockGet(output_type=Digest, input_types=(PathGlobs,), mock=lambda _: EMPTY_DIGEST),
            MockGet(output_type=CoreResult, input_types=(CoreProcess,), mock=core),
            MockGet(output_type=DigestContents, input_types=(DigestSubset,),
                    mock=lambda _: DigestContents([FileContent("out/wheels.json", json.dumps([WHEEL]).encode())])),
            MockGet(output_type=PinnedDownload, input_types=(PinnedDownloadRequest,), mock=download),
            MockGet(output_type=Digest, input_types=(MergeDigests,), mock=lambda _: EMPTY_DIGEST),
            MockGet(output_type=Digest, input_types=(AddPrefix,), mock=lambda _: EMPTY_DIGEST),
        ],
    )


def test_each_locked_wheel_is_downloaded_by_its_pin() -> None:
    seen: dict = {}
    run(["https://mirror.example.invalid/simple/"], seen)
    assert seen["argv"] == ("--lock", LOCK, "--index", "https://mirror.example.invalid/simple/",
                            "--platform", "linux/arm64")
    (source,) = seen["downloads"]
    assert (source.url, source.len, source.sha256, source.filename) == (
        WHEEL["url"], WHEEL["size"], WHEEL["sha256"], WHEEL["filename"])


@pytest.mark.parametrize("indexes, message", [
    ([], r"^models/fraud:fraud: field `handler`: \[python-repos\].indexes is empty"),
    (["https://ci:s3cret@mirror.example.invalid/simple/"], r"carries credentials or a query"),
    (["https://mirror.example.invalid/simple/?token=s3cret"], r"carries credentials or a query"),
])
def test_an_index_that_cannot_be_a_cache_key_is_refused(indexes: list[str], message: str) -> None:
    with pytest.raises(AegisBuildError, match=message) as error:
        run(indexes, {})
    assert "s3cret" not in str(error.value)
