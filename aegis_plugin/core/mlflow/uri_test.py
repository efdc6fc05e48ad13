from __future__ import annotations

import pytest

from aegis_plugin.core.mlflow.uri import ModelUri, ModelUriError, parse

RUN = "7211af93442a47abba7694e4e7920b6d"


def test_pinned_forms() -> None:
    assert parse(f"runs:/{RUN}/model") == ModelUri(run_id=RUN, path="model")
    assert parse(f"runs:/{RUN}//checkpoints/best/") == ModelUri(run_id=RUN, path="checkpoints/best")
    assert parse("models:/fraud-detector/12") == ModelUri(name="fraud-detector", version="12")
    assert parse("models:/team/fraud/3") == ModelUri(name="team/fraud", version="3")
    assert str(parse(f"runs:/{RUN}/model")) == f"runs:/{RUN}/model"
    assert str(parse("models:/fraud/3")) == "models:/fraud/3"


@pytest.mark.parametrize(
    "uri, says",
    [
        ("models:/fraud@champion", "is an alias"),
        ("models:/fraud/Production", "names a stage"),
        ("models:/fraud/staging", "names a stage"),
        ("models:/fraud/latest", "names a stage"),
        ("models:/fraud/0", "must be a number"),
        ("models:/fraud", "expected `models:/<name>/<version>`"),
        (f"runs:/{RUN}", "name the artifact path"),
        ("runs:/abc/model", "32 lowercase hex digits"),
        (f"runs:/{RUN}/../secrets", "without `..`"),
        ("s3://bucket/model", "expected `runs:/"),
        ("file:///tmp/model", "expected `runs:/"),
    ],
)
def test_floating_or_malformed_references_are_refused(uri: str, says: str) -> None:
    with pytest.raises(ModelUriError, match=None) as error:
        parse(uri)
    assert says in str(error.value) and "\n" not in str(error.value)


def test_the_helper_may_resolve_an_alias_once() -> None:
    assert parse("models:/fraud@champion", allow_alias=True) == ModelUri(name="fraud", alias="champion")
    assert str(parse("models:/fraud@champion", allow_alias=True)) == "models:/fraud@champion"
