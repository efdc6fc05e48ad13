"""RuleRunner tests of the package rules that need no network: fields, inference, the source revision."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess

import pytest

from pants.backend.python import register as python_backend
from pants.backend.python.target_types import PythonSourcesGeneratorTarget
from pants.core.target_types import FilesGeneratorTarget, FileTarget, http_source
from pants.core import register as core_backend
from pants.engine.addresses import Address
from pants.engine.fs import Digest, DigestContents
from pants.engine.internals.scheduler import ExecutionError
from pants.engine.target import InferredDependencies
from pants.testutil.rule_runner import QueryRule, RuleRunner

from aegis_plugin.util_rules.model_inputs import (
    InferModelPackageDependencies,
    ModelFilePaths,
    ModelFileRequest,
    ModelFiles,
    ModelFilesRequest,
    ModelInputs,
    ModelInputsRequest,
    ModelPackageReferencesFieldSet,
)
from aegis_plugin import register as aegis_backend
from aegis_plugin.target_types import DebianBaseTarget, MlflowArtifactsTarget, ModelPackageTarget
from aegis_plugin.util_rules.core_process import AegisBuildError
from aegis_plugin.util_rules.lineage import Lineage, LineageRequest
from aegis_plugin.util_rules.source_revision import SourceRevision, SourceRevisionRequest


RESOLVES = ["--python-enable-resolves", "--python-resolves={'runtime': 'r.lock'}", "--python-default-resolve=runtime"]


@pytest.fixture(scope="module")
def rule_runner() -> RuleRunner:
    """One rule graph for the module (building it is most of a test's time); each test writes the files it reads."""
    rule_runner = RuleRunner(
        target_types=[ModelPackageTarget, DebianBaseTarget, FileTarget, FilesGeneratorTarget,
                      PythonSourcesGeneratorTarget, MlflowArtifactsTarget],
        objects={"http_source": http_source},
        rules=[
            *core_backend.rules(),
            *python_backend.rules(),
            *aegis_backend.rules(),
            QueryRule(InferredDependencies, [InferModelPackageDependencies]),
            QueryRule(SourceRevision, [SourceRevisionRequest]),
            QueryRule(Lineage, [LineageRequest]),
            QueryRule(ModelInputs, [ModelInputsRequest]),
            QueryRule(ModelFiles, [ModelFilesRequest]),
            QueryRule(ModelFilePaths, [ModelFileRequest]),
            QueryRule(DigestContents, [Digest]),
        ],
    )
    rule_runner.set_options(RESOLVES, env_inherit={"PATH"})
    return rule_runner


def write_model(rule_runner: RuleRunner, **fields: str) -> None:
    values = dict(
        model_id='"demo"', version='"1.2.3"', weights='":weights"', tokenizer='":tokenizer"',
        model_card='"card.md"', handler='"m/server/handler.py"', framework='"numpy"',
        base_image='"//base:py"',
    )
    values.update(fields)
    args = ", ".join(f"{k}={v}" for k, v in values.items())
    rule_runner.write_files(
        {
            "m/BUILD": (
                'file(name="weights", source="w.safetensors")\nfile(name="tokenizer", source="t.json")\n'
                f'model_package(name="m", {args})\n'
            ),
            "m/w.safetensors": "", "m/t.json": "{}", "m/card.md": "# card\n",
            "m/server/BUILD": "python_sources()", "m/server/handler.py": "",
            "base/BUILD": 'debian_base(name="py", lockfile="py.lock")', "base/py.lock": "",
        }
    )


def test_model_package_dependencies_are_inferred(rule_runner: RuleRunner) -> None:
    write_model(rule_runner)
    target = rule_runner.get_target(Address("m", target_name="m"))
    inferred = rule_runner.request(
        InferredDependencies, [InferModelPackageDependencies(ModelPackageReferencesFieldSet.create(target))]
    )
    assert set(inferred.include) == {
        Address("m", target_name="weights"),
        Address("m", target_name="tokenizer"),
        Address("m/server", relative_file_path="handler.py"),
        Address("base", target_name="py"),
    }


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"version": '"1.0"'}, "m:m: field `version`: '1.0' is not a semantic version"),
        ({"version": '"latest"'}, "m:m: field `version`: 'latest' is not a semantic version"),
        ({"model_id": '"Demo Model"'}, "m:m: field `model_id`: 'Demo Model' is not a valid model id"),
        ({"accelerator": '"gpu"'}, "m:m: field `accelerator`: 'gpu' is not `cpu` or `cuda-MAJOR.MINOR`"),
        ({"base_image": '"debian:12"'}, "m:m: field `base_image`: 'debian:12' is given by tag '12'"),
        ({"repository": '"reg.example/ml/demo:latest"'}, "m:m: field `repository`:"),
        ({"platforms": '["linux/s390x"]'}, "m:m: field `platforms`: unsupported platform(s) ['linux/s390x']"),
        ({"platforms": '["linux/arm64", "linux/arm64"]'},
         "m:m: field `platforms`: ['linux/arm64', 'linux/arm64'] names a platform twice"),
        ({"weights_sha256": '"abc"'}, "m:m: field `weights_sha256`: 'abc' is not 64 lowercase hex digits"),
        ({"base_model": '"bert-base-uncased"'}, "m:m: field `base_model`: expected a package URL with a version"),
        ({"base_model": '"pkg:huggingface/google-bert/bert-base-uncased@main"'},
         "m:m: field `base_model`: 'main' is a floating version, not a pin"),
        ({"training_script": '"../other/train.py"'}, "m:m: field `training_script`: expected a path relative"),
    ],
)
def test_invalid_fields(rule_runner: RuleRunner, fields: dict, message: str) -> None:
    write_model(rule_runner, **fields)
    with pytest.raises(ExecutionError) as e:
        rule_runner.get_target(Address("m", target_name="m"))
    assert message in str(e.value)


def git(root: str, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", *args],
        cwd=root, check=True, capture_output=True, text=True,
        env={**os.environ, "GIT_COMMITTER_DATE": "2024-01-02T03:04:05Z", "GIT_AUTHOR_DATE": "2024-01-02T03:04:05Z"},
    ).stdout.strip()


def test_source_revision_is_the_newest_commit_touching_the_inputs(rule_runner: RuleRunner) -> None:
    root = rule_runner.build_root
    rule_runner.write_files({"m/input.txt": "1", "other.txt": "1"})
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "first")
    first = git(root, "rev-parse", "HEAD")
    rule_runner.write_files({"other.txt": "2"})
    git(root, "commit", "-qam", "unrelated")

    request = SourceRevisionRequest("m:m", ("m/input.txt",))
    revision = rule_runner.request(SourceRevision, [request])
    assert revision == SourceRevision(git_sha=first, commit_time=1704164645)

    rule_runner.write_files({"m/input.txt": "changed"})
    rule_runner.set_options(RESOLVES, env_inherit={"PATH"})  # a new run: the revision is read once per run
    assert rule_runner.request(SourceRevision, [request]).git_sha == f"{first}-dirty"


def _lineage(rule_runner: RuleRunner, **fields) -> Lineage:
    values = {"training_data": (), "evaluation_data": (), "base_model": None, "training_script": None, **fields}
    return rule_runner.request(Lineage, [LineageRequest("m:m", Address("m", target_name="m"), **values)])


def test_lineage_from_repository_files_pinned_downloads_and_the_training_script(rule_runner: RuleRunner) -> None:
    write_model(rule_runner)
    rule_runner.write_files({
        "m/data/BUILD": (
            'file(name="train", source="train.csv")\n'
            'file(name="holdout", source=http_source(url="https://data.example.com/h.parquet?sig=secret", '
            f'sha256="{"2" * 64}", len=4096, filename="h.parquet"))\n'
        ),
        "m/data/train.csv": "a,b\n1,2\n",
        "m/train.py": "print('train')\n",
    })
    lineage = _lineage(rule_runner, training_data=("m/data:train",), evaluation_data=("//m/data:holdout",),
                       base_model="pkg:generic/encoder@2.1.0", training_script="train.py")
    inventory = lineage.inventory
    assert [dict(d) for d in inventory["datasets"]] == [
        {"role": "training", "name": "train.csv", "location": "m/data/train.csv",
         "sha256": hashlib.sha256(b"a,b\n1,2\n").hexdigest(), "size": 8},
        {"role": "evaluation", "name": "h.parquet", "location": "https://data.example.com/h.parquet?sig=***",
         "sha256": "2" * 64, "size": 4096},  # recorded without the URL's secrets
    ]
    assert inventory["base_model"] == "pkg:generic/encoder@2.1.0"
    assert dict(inventory["training"]) == {"script": "m/train.py",
                                           "sha256": hashlib.sha256(b"print('train')\n").hexdigest()}
    assert lineage.paths == ("m/data/train.csv", "m/train.py")  # inputs of the package: they set its revision
    assert _lineage(rule_runner) == Lineage(None, ())


def test_lineage_errors_name_the_target_and_field(rule_runner: RuleRunner) -> None:
    write_model(rule_runner)
    rule_runner.write_files({"m/data/BUILD": 'file(name="gone", source="gone.csv")\n'})
    for fields, message in (
        ({"training_data": ("m/server/handler.py",)},
         "m:m: field `training_data`: m/server/handler.py is not a `file` or `files` target"),
        ({"training_script": "nope.py"}, "m:m: field `training_script`: m/nope.py is not a file of the repository"),
        ({"evaluation_data": ("m/data:gone",)}, "m:m: field `evaluation_data` (m/data:gone): "),
    ):
        with pytest.raises(ExecutionError) as e:
            _lineage(rule_runner, **fields)
        assert isinstance(e.value.wrapped_exceptions[0], AegisBuildError)
        assert message in str(e.value)


@pytest.mark.parametrize(
    "fields,options,message",
    [
        ({"handler": '":tokenizer"'}, [], "m:m: field `handler`: m:tokenizer is not a `python_source` target"),
        ({"base_image": '":weights"'}, [], "m:m: field `base_image`: m:weights is not a `debian_base` target"),
        ({"weights": '"m/server/handler.py"'}, [],
         "m:m: field `weights`: m/server/handler.py is not a `file`, `files` or `mlflow_artifacts` target"),
        ({}, ["--aegis-runtime-resolves=['pytorch']"],
         "m:m: field `handler`: m/server/handler.py is in resolve 'runtime', but images take third-party code from "
         "`[aegis].runtime_resolves` ['pytorch'] only"),
        ({"weights": '"m/shards"', "weights_sha256": f'"{"0" * 64}"'}, [],
         "m:m: field `weights_sha256` pins one weights file, but `weights` names 2 files"),
        ({"model_card": '"nope.md"'}, [], "m:m: field `model_card`: "),
        ({"weights": '"m/gone"'}, [], "m:m: field `weights` (m/gone:gone): "),
        # What the files' paths tell is refused before any of them is read.
        ({"weights": '"m/with_tokenizer"'}, [], "m:m: field `tokenizer`: the checkpoint named by `weights` has its "
                                                "own tokenizer.json: drop one of them"),
        ({"weights": '"m/with_card"', "tokenizer": "None"}, [],
         "m:m: field `weights`: the checkpoint has a model_card.md, which `model_card` provides: drop it"),
        ({"weights": '"m/twice"'}, [], "m:m: field `weights`: two files are named model.safetensors"),
    ],
)
def test_refused_inputs_name_the_target_and_field(
    rule_runner: RuleRunner, fields: dict, options: list, message: str
) -> None:
    write_model(rule_runner, **fields)
    rule_runner.write_files({
        "m/shards/BUILD": 'files(name="shards", sources=["*.safetensors"])',
        "m/shards/model-00001-of-00002.safetensors": "", "m/shards/model-00002-of-00002.safetensors": "",
        "m/gone/BUILD": 'file(name="gone", source="gone.safetensors")',
        "m/with_tokenizer/BUILD": 'files(name="with_tokenizer", sources=["*"])',
        "m/with_tokenizer/model.safetensors": "", "m/with_tokenizer/tokenizer.json": "{}",
        "m/with_card/BUILD": 'files(name="with_card", sources=["*"])',
        "m/with_card/model.safetensors": "", "m/with_card/model_card.md": "# card\n",
        "m/twice/BUILD": 'files(name="twice", sources=["a/model.safetensors", "b/model.safetensors"])',
        "m/twice/a/model.safetensors": "", "m/twice/b/model.safetensors": "",
    })
    rule_runner.set_options([*RESOLVES, *options], env_inherit={"PATH"})
    with pytest.raises(ExecutionError) as e:
        rule_runner.request(ModelInputs, [ModelInputsRequest(Address("m", target_name="m"))])
    assert isinstance(e.value.wrapped_exceptions[0], AegisBuildError), e.value
    assert message in str(e.value)


def test_model_files_are_hydrated_apart_under_their_image_paths(rule_runner: RuleRunner) -> None:
    write_model(rule_runner)
    rule_runner.write_files({
        "m/shards/BUILD": 'files(name="shards", sources=["*.safetensors", "*.json"])',
        "m/shards/model-00001-of-00002.safetensors": "a", "m/shards/model-00002-of-00002.safetensors": "b",
        "m/shards/model.safetensors.index.json": '{"weight_map": {}}',
    })
    shards = tuple(
        rule_runner.get_target(Address("m/shards", target_name="shards", relative_file_path=name)) for name in (
            "model.safetensors.index.json", "model-00002-of-00002.safetensors", "model-00001-of-00002.safetensors")
    )
    tokenizer = rule_runner.get_target(Address("m", target_name="tokenizer"))
    files = rule_runner.request(ModelFiles, [ModelFilesRequest("m:m", shards, tokenizer, None)])
    assert [path for path, _ in files.weights] == [  # a checkpoint's files keep their names, in order
        "/app/model/model-00001-of-00002.safetensors", "/app/model/model-00002-of-00002.safetensors",
        "/app/model/model.safetensors.index.json",
    ]
    contents = [rule_runner.request(DigestContents, [digest])[0].content for _, digest in files.weights]
    assert contents == [b"a", b"b", b'{"weight_map": {}}']
    assert files.tokenizer is not None and rule_runner.request(DigestContents, [files.tokenizer])[0].content == b"{}"

    weights = rule_runner.get_target(Address("m", target_name="weights"))
    one = ModelFilesRequest("m:m", (weights,), None, hashlib.sha256(b"").hexdigest())
    files = rule_runner.request(ModelFiles, [one])  # one file is /app/model/weights.safetensors, whatever its name
    assert [path for path, _ in files.weights] == ["/app/model/weights.safetensors"] and files.tokenizer is None

    with pytest.raises(ExecutionError) as e:  # the pin is checked against the bytes, so here
        rule_runner.request(ModelFiles, [dataclasses.replace(one, weights_sha256="0" * 64)])
    assert isinstance(e.value.wrapped_exceptions[0], AegisBuildError), e.value
    assert (f"m:m: field `weights_sha256`: m/w.safetensors has sha256 {hashlib.sha256(b'').hexdigest()}, "
            f"expected {'0' * 64}") in str(e.value)


def test_model_file_paths_need_no_download(rule_runner: RuleRunner) -> None:
    """An `http_source` file is where its filename says; a registry's files are where their pins say, and in no
    commit. Neither is fetched to find out (these URLs answer nothing)."""
    pin = ["1" * 64, 10]
    rule_runner.write_files({
        "m/remote/BUILD": (
            'file(name="w", source=http_source(url="https://models.example.com/w.safetensors?sig=s", '
            f'sha256="{"2" * 64}", len=10, filename="w.safetensors"))\n'
            f'mlflow_artifacts(name="run", source="runs:/{"f" * 32}/model", run_id="{"f" * 32}", '
            f'artifact_path="model", files={{"model.safetensors": {pin}, "config.json": {pin}}})\n'
        ),
    })
    paths = [
        rule_runner.request(ModelFilePaths, [ModelFileRequest("m:m", "weights", rule_runner.get_target(address))])
        for address in (Address("m/remote", target_name="w"), Address("m/remote", target_name="run"))
    ]
    assert paths == [
        ModelFilePaths(("m/remote/w.safetensors",), from_registry=False),
        ModelFilePaths(("m/remote/config.json", "m/remote/model.safetensors"), from_registry=True),  # pins, sorted
    ]
