"""`pants publish` against a real registry (docker-registry on 127.0.0.1), verified by the real cosign."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from aegis_plugin.core.registry.testutil import running_registry
from aegis_plugin.core.sign.testutil import cosign_binary, generate_key_pair, unsigned_jwt
from tests.e2e.clones import make_clone

IDENTITY = "ci@aegis.example"
PASSWORD = "correct horse"


def test_publish_signs_attests_tags_and_never_moves_a_version(tmp_path: Path) -> None:
    cosign = cosign_binary()
    keys = generate_key_pair(cosign, tmp_path / "keys", PASSWORD).parent
    clone = make_clone(tmp_path, "repo")
    signing = {"AEGIS_SIGNING_KEY_FILE": str(keys / "cosign.key"), "AEGIS_SIGNING_KEY_PASSWORD": PASSWORD}
    with running_registry(tmp_path / "registry") as registry:
        options = [f"--aegis-signer-identity={IDENTITY}", f"--aegis-publish-registry={registry}"]
        first = clone.pants(*options, "publish", "models/fraud::", env=signing)
        tagged = re.search(rf"{re.escape(registry)}/aegis/fraud-detector:1.0.0 -> (sha256:[0-9a-f]{{64}})", first.stdout)
        assert tagged, first.stdout + first.stderr
        digest = tagged.group(1)
        # `package` builds the same bytes (publish packages first, without writing dist/).
        clone.pants(f"--aegis-signer-identity={IDENTITY}", "package", "models/fraud::")
        assert clone.image_summary()["manifest_digest"] == digest
        layers = len(clone.image_summary()["layers"])  # and the config
        assert f"{layers + 1} blob(s)" in first.stdout and "signature attached" in first.stdout
        # The model signature covers the weights (a layer of their own), the tokenizer and the card.
        assert "model signature (OpenSSF model-signing, 3 files) attached" in first.stdout, first.stdout

        ref = f"{registry}/aegis/fraud-detector@{digest}"
        check = [cosign, "--key", str(keys / "cosign.pub"), "--insecure-ignore-tlog=true", "--allow-http-registry"]
        verified = subprocess.run([check[0], "verify", *check[1:], ref], capture_output=True, text=True)
        assert verified.returncode == 0, verified.stderr
        assert json.loads(verified.stdout)[0]["optional"]["signed_by"] == IDENTITY
        for kind in ("cyclonedx", "slsaprovenance1"):
            attested = subprocess.run([check[0], "verify-attestation", *check[1:], "--type", kind, ref],
                                      capture_output=True, text=True)
            assert attested.returncode == 0, (kind, attested.stderr)

        again = clone.pants(*options, "publish", "models/fraud::", env=signing)
        assert "no layer bytes uploaded" in again.stdout and "already ->" in again.stdout, again.stdout

        verify = clone.pants("run", "aegis_plugin/core/publish:aegis", "--", "verify", ref,
                             "--key", str(keys / "cosign.pub"), "--identity", IDENTITY)
        assert f"verified {ref}: signed by {IDENTITY}" in verify.stdout

        # Another build of version 1.0.0 (unsigned, so its manifest differs): the tag must not move.
        moved = clone.pants(f"--aegis-publish-registry={registry}", "publish", "models/fraud::", check=False)
        assert moved.returncode != 0
        assert f"already points to {digest}; refusing to move it to sha256:" in moved.stderr + moved.stdout

        # Keyless: the CI's token names another workflow than signed_by: refused before anything is pushed.
        token = unsigned_jwt({"iss": "https://token.actions.githubusercontent.com", "sub": "repo:acme/models",
                              "job_workflow_ref": "acme/models/.github/workflows/other.yml@refs/heads/main"})
        keyless = clone.pants(*options, "--aegis-publish-signing=keyless", "publish", "models/fraud::",
                              env={"SIGSTORE_ID_TOKEN": token}, check=False)
        assert keyless.returncode != 0
        assert ("keyless signing: the CI's identity is 'https://github.com/acme/models/.github/workflows/other.yml"
                f"@refs/heads/main', but the image's manifest says signed_by '{IDENTITY}'") in keyless.stderr
