"""For the tests: the inputs `pants publish` hands the publisher, for a small image."""
from __future__ import annotations

import json
from pathlib import Path

from aegis_plugin.core.registry.testutil import make_layout


def publish_inputs(tmp_path: Path, content: bytes, name: str = "oci") -> list:
    image = make_layout(tmp_path / name, content)
    (tmp_path / "sbom.json").write_text(json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.6"}))
    (tmp_path / "provenance.json").write_text(json.dumps({
        "builder_id": "https://example.invalid/builder", "target": "models/fraud:fraud", "version": "1.0.0",
        "source_url": "https://example.invalid/repo", "git_sha": "ab" * 20,
        "materials": [{"uri": "3rdparty/python/runtime.lock", "sha256": "cd" * 32}],
        "invocation": ["pants", "publish", "models/fraud:fraud"]}))
    return ["--layout", image.layout, "--sbom", str(tmp_path / "sbom.json"),
            "--provenance", str(tmp_path / "provenance.json")]
