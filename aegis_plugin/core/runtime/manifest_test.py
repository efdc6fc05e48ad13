from __future__ import annotations

from pathlib import Path

import pytest

from aegis_plugin.core.runtime import manifest

VALUES = {
    "model_id": "fraud-detector",
    "version": "1.0.0",
    "git_sha": "0123abcd-dirty",
    "framework": "numpy",
    "framework_version": "1.26.4",
    "accelerator": "cuda-12.4",
    "signed_by": 'ci "bot" <ci@example.com>',
}


def test_render_is_stable() -> None:
    # The bytes go into the image's app layer: any change here changes every image digest.
    assert manifest.render(VALUES) == (
        b"# Written by Aegis at build time; describes this image.\n"
        b'model_id: "fraud-detector"\n'
        b'version: "1.0.0"\n'
        b'git_sha: "0123abcd-dirty"\n'
        b'framework: "numpy"\n'
        b'framework_version: "1.26.4"\n'
        b'accelerator: "cuda-12.4"\n'
        b'signed_by: "ci \\"bot\\" <ci@example.com>"\n'
    )


def test_render_requires_every_field() -> None:
    with pytest.raises(ValueError, match="signed_by"):
        manifest.render({k: v for k, v in VALUES.items() if k != "signed_by"})


def test_card_fields_follow_in_a_fixed_order_and_unknown_fields_are_refused() -> None:
    rendered = manifest.render({"owner": "ML team", "license": "Apache-2.0", **VALUES})
    assert rendered.endswith(b'signed_by: "ci \\"bot\\" <ci@example.com>"\nlicense: "Apache-2.0"\nowner: "ML team"\n')
    with pytest.raises(ValueError, match="unknown fields \\['tags'\\]"):
        manifest.render({**VALUES, "tags": "x"})


def test_registry_provenance_follows_with_one_key_per_parameter_and_metric() -> None:
    registry = {
        "mlflow_param.lr": "0.01",
        "mlflow_metric.auc": "0.97",
        "mlflow_run_id": "7211af93442a47abba7694e4e7920b6d",
        "mlflow_source": "models:/fraud/3",
        "mlflow_param.epochs": "30",
    }
    rendered = manifest.render({**registry, **VALUES}).decode()
    assert rendered.split("\n")[8:] == [
        'mlflow_source: "models:/fraud/3"',
        'mlflow_run_id: "7211af93442a47abba7694e4e7920b6d"',
        'mlflow_metric.auc: "0.97"',
        'mlflow_param.epochs: "30"',
        'mlflow_param.lr: "0.01"',
        "",
    ]
    assert manifest.parse(rendered)["mlflow_param.lr"] == "0.01"
    for bad in ("mlflow_param.", "mlflow_param.a b", "mlflow_metric.x:y"):
        with pytest.raises(ValueError, match="not plain names"):
            manifest.render({**VALUES, bad: "1"})


def test_load_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "manifest.yaml"
    path.write_bytes(manifest.render(VALUES))
    assert manifest.load(str(path)) == VALUES


def test_plain_scalars_comments_and_blank_lines() -> None:
    text = "# a comment\n\nmodel_id: toy\n  version:   1.0  \naccelerator: \"cpu\"\nsigned_by:\n"
    assert manifest.parse(text) == {"model_id": "toy", "version": "1.0", "accelerator": "cpu", "signed_by": ""}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("model_id toy\n", "m:1: expected `key: value`"),
        (": toy\n", "m:1: expected `key: value`"),
        ('model_id: "a"\nmodel_id: "b"\n', "m:2: 'model_id' is given twice"),
        ('model_id: "unterminated\n', "m:1: the value of 'model_id' is not a valid quoted string"),
    ],
)
def test_malformed_manifests(text: str, expected: str) -> None:
    with pytest.raises(ValueError) as error:
        manifest.parse(text, "m")
    assert expected in str(error.value)
