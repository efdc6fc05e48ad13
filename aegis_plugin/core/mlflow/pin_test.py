from __future__ import annotations

import ast

from aegis_plugin.core.mlflow.client import Run
from aegis_plugin.core.mlflow.pin import render_target

RUN = "7211af93442a47abba7694e4e7920b6d"


def test_the_printed_target_is_a_build_file_call_with_every_pin() -> None:
    run = Run(RUN, "1", "FINISHED", "b" * 40, {"lr": "0.05", "epochs": "200"}, {"auc": 0.981})
    text = render_target("checkpoint", "models:/fraud/3", run, "fraud", "model",
                         [("weights.safetensors", "a" * 64, 3676), ("tokenizer.json", "c" * 64, 2)])
    call = ast.parse(text).body[0].value
    assert call.func.id == "mlflow_artifacts"
    fields = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    assert fields == {
        "name": "checkpoint",
        "source": "models:/fraud/3",
        "run_id": RUN,
        "artifact_path": "model",
        "files": {"tokenizer.json": ["c" * 64, 2], "weights.safetensors": ["a" * 64, 3676]},
        "experiment": "fraud",
        "git_commit": "b" * 40,
        "params": {"epochs": "200", "lr": "0.05"},
        "metrics": {"auc": 0.981},
    }
    assert text.index("'tokenizer.json'") < text.index("'weights.safetensors'")  # sorted, for stable diffs
