"""Weights from `http_source` (served on 127.0.0.1 here) are downloaded by a cacheable process, pinned by sha256."""
from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import tarfile
import threading

import pytest

from tests.e2e.clones import Clone, make_clone


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A throwaway HTTP server on loopback serving a copy of the demo weights; stopped after the tests."""
    root = tmp_path_factory.mktemp("www")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Clone:
    return make_clone(tmp_path_factory.mktemp("http"), "repo")


def write_remote_model(clone: Clone, url: str, sha256: str, size: int) -> None:
    remote = clone.root / "models/remote"
    remote.mkdir(exist_ok=True)
    card = (clone.root / "models/fraud/model_card.md").read_text()
    (remote / "model_card.md").write_text(card.replace("- model_id: fraud-detector", "- model_id: remote"))
    (remote / "BUILD").write_text(
        f'file(name="weights", source=http_source(url="{url}", sha256="{sha256}", len={size}, '
        'filename="weights.safetensors"))\n'
        'model_package(name="remote", model_id="remote", version="1.0.0", weights=":weights", '
        'model_card="model_card.md", handler="models/fraud/server/handler.py", framework="numpy")\n'
    )


def test_http_source_weights_are_packaged(served, clone: Clone) -> None:
    root, base_url = served
    weights = (clone.root / "models/fraud/weights.safetensors").read_bytes()
    (root / "w.safetensors").write_bytes(weights)
    write_remote_model(clone, f"{base_url}/w.safetensors", hashlib.sha256(weights).hexdigest(), len(weights))
    clone.pants("package", "models/remote::")
    summary = clone.image_summary("models/remote/remote")
    weights_layer = summary["layers"][2]
    assert weights_layer["description"] == "model weights weights.safetensors"
    blob = clone.root / "dist/models/remote/remote/oci/blobs/sha256" / weights_layer["digest"].split(":")[1]
    with tarfile.open(blob) as tar:
        shipped = tar.extractfile("app/model/weights.safetensors").read()
    assert shipped == weights


def test_http_source_with_the_wrong_sha256_fails(served, clone: Clone) -> None:
    root, base_url = served
    (root / "other.safetensors").write_bytes(b"not the pinned weights")
    write_remote_model(clone, f"{base_url}/other.safetensors", "0" * 64, 22)
    shutil.rmtree(clone.root / "dist", ignore_errors=True)
    result = clone.pants("package", "models/remote::", check=False)
    assert result.returncode != 0
    error = [line for line in result.stderr.splitlines() if "models/remote:remote: field `weights`" in line]
    assert error and "but the pin is 22 bytes with sha256 " + "0" * 64 in error[0], result.stderr
    assert not (clone.root / "dist/models/remote").exists()


def test_http_source_credentials_and_signatures_stay_out_of_the_output(served, clone: Clone) -> None:
    """A URL with userinfo and a signed query is fetched by Pants (no process holds it), and neither a success
    nor a failure prints its secrets."""
    root, base_url = served
    secrets = ("deploy-bot", "s3cr3t-pa55", "f00dfeedcafe1234")
    signed = "X-Amz-Signature=f00dfeedcafe1234&X-Amz-Credential=AKIA%2Fdeploy-bot"
    origin = base_url.replace("http://", "http://deploy-bot:s3cr3t-pa55@")
    weights = (clone.root / "models/fraud/weights.safetensors").read_bytes()
    (root / "w.safetensors").write_bytes(weights)
    write_remote_model(clone, f"{origin}/w.safetensors?{signed}", hashlib.sha256(weights).hexdigest(), len(weights))
    result = clone.pants("package", "models/remote::")
    log = clone.root / ".pants.d/pants.log"
    output = result.stdout + result.stderr + (log.read_text(errors="replace") if log.exists() else "")
    assert not [s for s in secrets if s in output], output

    write_remote_model(clone, f"{origin}/missing.safetensors?{signed}", "0" * 64, 22)
    result = clone.pants("package", "models/remote::", check=False)
    assert result.returncode != 0
    shown = base_url.replace("http://", "http://***@") + "/missing.safetensors?X-Amz-Signature=***&X-Amz-Credential=***"
    assert f"models/remote:remote: field `weights` (models/remote:weights): cannot download {shown}: " in result.stderr
    assert not [s for s in secrets if s in result.stdout + result.stderr], result.stderr
