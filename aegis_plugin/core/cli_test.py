from __future__ import annotations

import hashlib
import json
from pathlib import Path

from aegis_plugin.core import cli

CARD = """\
# Demo
## Model details
- license: Apache-2.0
- owner: ML team
## Intended use
Demos.
## Out-of-scope use
Production.
## Training data
Synthetic.
## Evaluation metrics
- auc: 0.9
## Limitations
Small.
## License
Apache-2.0
## Owner
ML team
"""


def test_files_layer_reports_hashes_and_the_parsed_model_card(tmp_path: Path) -> None:
    (tmp_path / "card.md").write_text(CARD)
    spec = {
        "mtime": 0,
        "description": "model files",
        "entries": [
            {"path": "/app/model/model_card.md", "origin": "field `model_card`", "name": "card.md",
             "source": str(tmp_path / "card.md"), "mode": 0o644, "check": "model_card"},
            {"path": "/app/manifest.yaml", "origin": "the manifest", "name": "manifest.yaml", "text": "a: 1\n",
             "mode": 0o644},
        ],
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out = tmp_path / "out"
    assert cli.main(["files-layer", "--spec", str(tmp_path / "spec.json"), "--out", str(out)]) == 0
    files = json.loads((out / cli.FILES_INFO).read_text())
    assert files == [
        {"path": "/app/manifest.yaml", "sha256": hashlib.sha256(b"a: 1\n").hexdigest(),
         "sha1": hashlib.sha1(b"a: 1\n").hexdigest(), "size": 5},
        {"path": "/app/model/model_card.md", "sha256": hashlib.sha256(CARD.encode()).hexdigest(),
         "sha1": hashlib.sha1(CARD.encode()).hexdigest(), "size": len(CARD.encode())},
    ]
    card = json.loads((out / cli.MODEL_CARD_INFO).read_text())
    assert card["fields"] == {"license": "Apache-2.0", "owner": "ML team"}
    assert card["sections"]["Intended use"] == "Demos."
    assert (out / cli.LAYER_BLOB).exists() and (out / cli.LAYER_INFO).exists()


def test_files_layer_without_a_card_writes_no_card(tmp_path: Path) -> None:
    spec = {"mtime": 0, "description": "app", "entries": [
        {"path": "/app/x", "origin": "o", "name": "x", "text": "", "mode": 0o644}]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    assert cli.main(["files-layer", "--spec", str(tmp_path / "spec.json"), "--out", str(tmp_path / "out")]) == 0
    assert not (tmp_path / "out" / cli.MODEL_CARD_INFO).exists()
