"""`build_model_image` and `build_model_layers` on mocked inputs and layers (as Pants' docker backend tests its
build rule): what each asks for, and the image's own refusals, each one line naming the target and field, found
before the app layer."""
from __future__ import annotations

import hashlib
import json

import pytest

from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.util_rules.python_sources import PythonSourceFiles
from pants.core.util_rules.source_files import SourceFiles
from pants.engine.addresses import Address
from pants.engine.fs import (
    EMPTY_DIGEST, EMPTY_SNAPSHOT, Digest, DigestContents, DigestSubset, FileContent, MergeDigests, Snapshot,
)
from pants.engine.target import HydratedSources
from pants.testutil.option_util import create_subsystem
from pants.testutil.rule_runner import MockGet, run_rule_with_mocks
from pants.util.frozendict import FrozenDict

from aegis_plugin.goals.package import (
    ModelImageRequest, ModelLayers, ModelLayersRequest, ModelPackageFieldSet, build_model_image, build_model_layers,
)
from aegis_plugin.subsystems.aegis import AegisSubsystem
from aegis_plugin.subsystems.sbom import SbomSubsystem
from aegis_plugin.target_types import ModelPackageTarget
from aegis_plugin.util_rules.core_process import AegisBuildError, CoreToolPex, CoreToolPexRequest
from aegis_plugin.util_rules.image import OciImage, OciImageRequest
from aegis_plugin.util_rules.layers import (
    AppLayerRequest, DebianLayerRequest, DepsLayerRequest, FilesLayerRequest, Layer,
)
from aegis_plugin.util_rules.model_inputs import ModelFiles, ModelFilesRequest, ModelInputs, ModelInputsRequest
from aegis_plugin.util_rules.sbom import Sbom, SbomRequest
from aegis_plugin.util_rules.source_revision import SourceRevision

ADDRESS = Address("models/fraud", target_name="fraud")
CONTEXT = "models/fraud:fraud"
WEIGHTS = "/app/model/weights.safetensors"


def inputs() -> ModelInputs:
    return ModelInputs(
        context=CONTEXT,
        files=ModelFilesRequest(CONTEXT, (), None, None),
        model_card=EMPTY_DIGEST,
        handler=Address("models/fraud/server", relative_file_path="handler.py"),
        handler_source=HydratedSources(
            Snapshot.create_for_testing(["models/fraud/server/handler.py"], []), None, None),
        handler_sources=PythonSourceFiles(SourceFiles(EMPTY_SNAPSHOT, ()), ()),
        resolve="runtime", base=Address("3rdparty/debian", target_name="python3.11-bookworm"),
        base_lockfile=HydratedSources(Snapshot.create_for_testing(["3rdparty/debian/b.lock"], []), None, None),
        python="/usr/bin/python3.11", revision=SourceRevision("1" * 40, 111),
        model_revision=SourceRevision("2" * 40, 222),
    )


LAYER = Layer(EMPTY_DIGEST, "sha256:" + "0" * 64)


def layer_of(description: str) -> Layer:
    """A mocked layer that says which request it was built for."""
    return Layer(EMPTY_DIGEST, "sha256:" + hashlib.sha256(description.encode()).hexdigest())


def model_layers(files: ModelFiles, compression: str = "gzip", layer_requests: list | None = None) -> ModelLayers:
    """Runs `build_model_layers` on mocked files; with `layer_requests`, records every layer it asks for."""
    def built(request: FilesLayerRequest) -> Layer:
        if layer_requests is not None:
            layer_requests.append(request)
        return layer_of(request.description)

    return run_rule_with_mocks(
        build_model_layers,
        rule_args=[ModelLayersRequest(CONTEXT, inputs().files, EMPTY_DIGEST, 0, compression)],
        mock_gets=[
            MockGet(output_type=ModelFiles, input_types=(ModelFilesRequest,), mock=lambda _: files),
            MockGet(output_type=Layer, input_types=(FilesLayerRequest,), mock=built),
        ],
    )


def not_reached(request: object) -> None:
    raise AssertionError(f"the rule went on to {type(request).__name__}")


class ReachedTheApp(Exception):
    pass


def run(model_inputs: ModelInputs, card_fields: dict | None = None, framework: str = "numpy",
        fields: dict | None = None, layer_requests: list | None = None) -> None:
    """Runs the rule up to its app layer; with `layer_requests`, records every layer it asks for, the app's
    included, and stops there (`ReachedTheApp`)."""
    target = ModelPackageTarget({"model_id": "fraud-detector", "version": "1.0.0", "weights": ":w", "handler": "h.py",
                                 "model_card": "card.md", "framework": framework, **(fields or {})}, ADDRESS)
    deps = [{"name": name, "version": version, "files": []} for name, version in [("numpy", "2.4.6"),
                                                                                ("safetensors", "0.8.0")]]

    def contents(request: DigestSubset) -> DigestContents:
        if "out/model_card.json" in request.globs.globs:
            card = json.dumps({"fields": card_fields or {}}).encode()
            return DigestContents([FileContent("out/model_card.json", card)])
        return DigestContents([FileContent("out/inventory.json", json.dumps({"python": deps}).encode()),
                               FileContent("out/requirements.lock", b"")])

    def built(request: object) -> Layer:
        if layer_requests is not None:
            layer_requests.append(request)
        return LAYER

    def model(request: ModelLayersRequest) -> ModelLayers:
        if layer_requests is not None:
            layer_requests.append(request)
        return ModelLayers(LAYER, ((LAYER, WEIGHTS),), (LAYER,), FrozenDict({WEIGHTS: "weights"}))

    def tool(request: CoreToolPexRequest) -> CoreToolPex:
        if layer_requests is not None:
            layer_requests.append(request)
        return CoreToolPex(None)  # type: ignore[arg-type]

    def app(request: AppLayerRequest) -> Layer:
        if layer_requests is None:
            not_reached(request)
        layer_requests.append(request)  # type: ignore[union-attr]
        raise ReachedTheApp()

    run_rule_with_mocks(
        build_model_image,
        rule_args=[
            ModelImageRequest(ModelPackageFieldSet.create(target), "linux/amd64"),
            create_subsystem(AegisSubsystem, signer_identity="ci@aegis.example"),
            create_subsystem(SbomSubsystem, resolve="sbom-resolve"),
            create_subsystem(PythonSetup),
        ],
        mock_gets=[
            MockGet(output_type=ModelInputs, input_types=(ModelInputsRequest,), mock=lambda _: model_inputs),
            MockGet(output_type=ModelLayers, input_types=(ModelLayersRequest,), mock=model),
            MockGet(output_type=Layer, input_types=(DebianLayerRequest,), mock=built),
            MockGet(output_type=Layer, input_types=(DepsLayerRequest,), mock=built),
            MockGet(output_type=CoreToolPex, input_types=(CoreToolPexRequest,), mock=tool),
            MockGet(output_type=DigestContents, input_types=(DigestSubset,), mock=contents),
            # Every refusal comes before these steps.
            MockGet(output_type=Layer, input_types=(AppLayerRequest,), mock=app),
            MockGet(output_type=Sbom, input_types=(SbomRequest,), mock=not_reached),
            MockGet(output_type=OciImage, input_types=(OciImageRequest,), mock=not_reached),
            MockGet(output_type=Digest, input_types=(MergeDigests,), mock=not_reached),
        ],
    )


def test_the_model_layers_and_roles() -> None:
    shards = tuple((f"/app/model/model-0000{i}-of-00002.safetensors", EMPTY_DIGEST) for i in (1, 2))
    files = ModelFiles((*shards, ("/app/model/config.json", EMPTY_DIGEST)), EMPTY_DIGEST)
    requests: list = []
    layers = model_layers(files, layer_requests=requests)
    assert [r.description for r in requests] == [
        "model card",
        "model weights model-00001-of-00002.safetensors", "model weights model-00002-of-00002.safetensors",
        "model files",
    ]
    # One layer per weights file, each with its own path; the small files' layer apart; the card's.
    assert list(layers.weights) == [(layer_of(f"model weights {path.rsplit('/', 1)[1]}"), path) for path, _ in shards]
    assert layers.config == (layer_of("model files"),) and layers.card == layer_of("model card")
    assert dict(layers.roles) == {
        shards[0][0]: "weights", shards[1][0]: "weights", "/app/model/config.json": "config",
        "/app/model/tokenizer.json": "tokenizer", "/app/model/model_card.md": "model_card",
    }
    # The card's layer step checks the checkpoint as a whole: every file of it, by name.
    assert [name for name, _ in requests[0].checkpoint] == [
        "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "config.json",
    ]


def test_a_framework_the_handler_does_not_depend_on() -> None:
    with pytest.raises(AegisBuildError, match=rf"^{CONTEXT}: field `framework`: 'torch' is not among the handler's "
                                              r"runtime dependencies \(numpy, safetensors\)$"):
        run(inputs(), framework="torch")


@pytest.mark.parametrize("key, value", [("model_id", "churn"), ("version", "2.0.0"), ("framework", "safetensors")])
def test_a_card_that_disagrees_with_the_target(key: str, value: str) -> None:
    with pytest.raises(AegisBuildError, match=rf"^{CONTEXT}: field `model_card`: the card says {key} '{value}', but "
                                              rf"the target's `{key}` is '[^']+': update one of them$"):
        run(inputs(), card_fields={key: value})


def test_the_image_asks_for_the_model_layers_beside_the_base_and_deps_and_the_sbom_tool() -> None:
    requests: list = []
    with pytest.raises(ReachedTheApp):
        run(inputs(), layer_requests=requests)
    (model_request,) = [r for r in requests if isinstance(r, ModelLayersRequest)]
    assert model_request == ModelLayersRequest(CONTEXT, inputs().files, EMPTY_DIGEST, 222, "gzip")  # model's revision
    assert [r.resolve for r in requests if isinstance(r, CoreToolPexRequest)] == ["sbom-resolve"]


@pytest.mark.parametrize("fields, expected", [({}, "gzip"), ({"layer_compression": "zstd"}, "zstd")])
def test_layer_compression_reaches_every_compressed_layer(fields: dict, expected: str) -> None:
    requests: list = []
    with pytest.raises(ReachedTheApp):
        run(inputs(), fields=fields, layer_requests=requests)
    compressions = {getattr(r, "description", type(r).__name__): r.compression for r in requests
                    if not isinstance(r, CoreToolPexRequest)}
    assert compressions == {
        "DebianLayerRequest": expected, "DepsLayerRequest": expected, "AppLayerRequest": expected,
        "ModelLayersRequest": expected,
    }
    (model_request,) = [r for r in requests if isinstance(r, ModelLayersRequest)]
    layer_requests: list = []
    model_layers(ModelFiles(((WEIGHTS, EMPTY_DIGEST),), EMPTY_DIGEST), model_request.compression, layer_requests)
    assert {r.description: r.compression for r in layer_requests} == {
        "model card": expected, "model files": expected,
        "model weights weights.safetensors": "none",  # weights are plain tars whatever the field says
    }
