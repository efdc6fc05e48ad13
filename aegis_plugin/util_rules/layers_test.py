"""The layer rules with mocked processes and downloads: what they ask for, and what they refuse before any
process runs (each refusal one line naming the target and what to change)."""
from __future__ import annotations

import json

import pytest

from pants.backend.python.subsystems.repos import PythonRepos
from pants.backend.python.subsystems.setup import PythonSetup
from pants.engine.fs import (
    EMPTY_DIGEST, AddPrefix, Digest, DigestContents, DigestEntries, DigestSubset, DownloadFile, FileContent,
    FileDigest, FileEntry, MergeDigests, PathGlobs,
)
from pants.testutil.option_util import create_subsystem
from pants.testutil.rule_runner import MockGet, run_rule_with_mocks

from aegis_plugin.util_rules.core_process import AegisBuildError, CoreProcess, CoreResult
from aegis_plugin.util_rules.download import PinnedDownload, PinnedDownloadRequest
from aegis_plugin.subsystems.aegis import AegisSubsystem
from aegis_plugin.util_rules.layers import (
    DebianLayerRequest, FilesLayerRequest, LayerFile, LockedWheels, LockedWheelsRequest, build_debian_layer,
    build_files_layer, locked_wheels,
)

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


def not_reached(request: object) -> None:
    raise AssertionError(f"the rule went on to {type(request).__name__}")


DEB = """Package: libfoo1
Version: 1.0-1
Architecture: amd64
Source: foo
Source-Version: 1.0-1
Suite: {suite}
Filename: pool/main/f/foo/libfoo1_1.0-1_amd64.deb
Size: 3
SHA256: {sha256}
"""


def run_debian(suite: str, mirrors: dict, download, platform: str = "linux/amd64") -> None:
    lock = DEB.format(suite=suite, sha256="a" * 64).encode()
    run_rule_with_mocks(
        build_debian_layer,
        rule_args=[DebianLayerRequest("models/x:x: field `base_image`", EMPTY_DIGEST, "b.lock", platform),
                   create_subsystem(AegisSubsystem, debian_mirrors=mirrors)],
        mock_gets=[
            MockGet(output_type=DigestContents, input_types=(Digest,),
                    mock=lambda _: DigestContents([FileContent("b.lock", lock)])),
            MockGet(output_type=Digest, input_types=(DownloadFile,), mock=download),
            MockGet(output_type=Digest, input_types=(MergeDigests,), mock=not_reached),
            MockGet(output_type=Digest, input_types=(AddPrefix,), mock=not_reached),
            MockGet(output_type=CoreResult, input_types=(CoreProcess,), mock=not_reached),
            MockGet(output_type=DigestContents, input_types=(DigestSubset,), mock=not_reached),
        ],
    )


def test_a_suite_no_archive_serves() -> None:
    with pytest.raises(AegisBuildError, match=r"^models/x:x: field `base_image`: no Debian archive serves suite "
                                              r"'trixie-nowhere' for libfoo1: add it to the apt sources or set "
                                              r"`\[aegis\].debian_mirrors`$"):
        run_debian("trixie-nowhere", {}, not_reached)


def test_a_lock_without_the_platforms_architecture() -> None:
    with pytest.raises(AegisBuildError, match=r"^models/x:x: field `base_image`: b.lock has no packages for arm64 "
                                              r"\(it locks amd64\): lock it with `python3 "
                                              r"build-support/lock_debian.py <spec> --arch amd64,arm64`$"):
        run_debian("bookworm", {}, not_reached, platform="linux/arm64")


def test_each_package_is_fetched_from_its_suites_mirror_by_its_pin() -> None:
    asked = []

    def download(request: DownloadFile) -> Digest:
        asked.append((request.url, request.expected_digest))
        return EMPTY_DIGEST

    with pytest.raises(AssertionError, match="the rule went on to MergeDigests"):  # the step after the downloads
        run_debian("bookworm", {"bookworm": "https://mirror.example.invalid/debian/"}, download)
    assert asked == [("https://mirror.example.invalid/debian/pool/main/f/foo/libfoo1_1.0-1_amd64.deb",
                      FileDigest("a" * 64, 3))]


def test_a_layer_file_that_names_several_files() -> None:
    tokenizer = LayerFile("/app/model/tokenizer.json", "field `tokenizer`", EMPTY_DIGEST)
    request = FilesLayerRequest("models/x:x", "model files", (tokenizer,), 0)
    two = DigestEntries([FileEntry("a.json", FileDigest("b" * 64, 1)), FileEntry("b.json", FileDigest("c" * 64, 1))])
    with pytest.raises(AegisBuildError, match=r"^models/x:x: field `tokenizer` must name exactly one file, got 2$"):
        run_rule_with_mocks(
            build_files_layer,
            rule_args=[request],
            mock_gets=[
                MockGet(output_type=DigestEntries, input_types=(Digest,), mock=lambda _: two),
                MockGet(output_type=Digest, input_types=(AddPrefix,), mock=lambda _: EMPTY_DIGEST),
                MockGet(output_type=Digest, input_types=(MergeDigests,), mock=not_reached),
                MockGet(output_type=CoreResult, input_types=(CoreProcess,), mock=not_reached),
                MockGet(output_type=DigestContents, input_types=(DigestSubset,), mock=not_reached),
            ],
        )


def test_a_files_layer_hands_the_core_each_files_sha256_from_its_digest() -> None:
    """So the layer step does not hash GBs of weights again: Pants' digest of the input is their SHA-256."""
    weights = LayerFile("/app/model/weights.safetensors", "field `weights`", EMPTY_DIGEST)
    one = DigestEntries([FileEntry("m/w.safetensors", FileDigest("d" * 64, 9))])
    seen: list = []

    def core(process: CoreProcess) -> CoreResult:
        seen.append(process.spec)
        return CoreResult(EMPTY_DIGEST)

    run_rule_with_mocks(
        build_files_layer,
        rule_args=[FilesLayerRequest("models/x:x", "model weights", (weights,), 0, compression="none")],
        mock_gets=[
            MockGet(output_type=DigestEntries, input_types=(Digest,), mock=lambda _: one),
            MockGet(output_type=Digest, input_types=(AddPrefix,), mock=lambda _: EMPTY_DIGEST),
            MockGet(output_type=Digest, input_types=(MergeDigests,), mock=lambda _: EMPTY_DIGEST),
            MockGet(output_type=CoreResult, input_types=(CoreProcess,), mock=core),
            MockGet(output_type=DigestContents, input_types=(DigestSubset,), mock=lambda _: DigestContents(
                [FileContent("out/layer.json", json.dumps({"digest": "sha256:" + "e" * 64}).encode())])),
        ],
    )
    ((entry,),) = [spec["entries"] for spec in seen]
    assert (entry["source"], entry["sha256"]) == ("in/0/m/w.safetensors", "d" * 64)
