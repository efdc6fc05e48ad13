"""`aegis promote` between real registries (docker-registry on 127.0.0.1): it copies exactly what it
verified, and never overwrites the signatures already at the target."""
from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from aegis_plugin.core.publish import aegis, cli, model_signature
from aegis_plugin.core.publish import promote as promote_module
from aegis_plugin.core.publish.testutil import (
    publish_inputs,
    put_attached,
    signing_key_env,
    simple_signed,
    write_public_key,
)
from aegis_plugin.core.publish.verify import Verified
from aegis_plugin.core.registry.client import Registry
from aegis_plugin.core.registry.reference import parse
from aegis_plugin.core.registry.testutil import running_registry
from aegis_plugin.core.sign import cosign

IDENTITY = "ci@aegis.example"
KEY, OTHER_KEY = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
SUFFIXES = ("sig", "att", model_signature.SUFFIX)


@pytest.fixture
def staging(tmp_path: Path):
    """(registry address, image digest): a key-signed image published to REGISTRY/staging/fraud:1.0.0."""
    with running_registry(tmp_path / "staging") as address:
        args = [*publish_inputs(tmp_path, b"weights"), "--target", f"{address}/staging/fraud:1.0.0",
                "--signer-identity", IDENTITY]
        lines = cli.publish(cli.parser().parse_args(args), signing_key_env(KEY))
        yield address, lines[-1].rsplit("-> ", 1)[1]


@pytest.fixture
def prod(tmp_path: Path):
    with running_registry(tmp_path / "prod") as address:
        yield address


def _digests(client: Registry, repository: str, digest: str) -> dict:
    return {suffix: client.manifest_digest(repository, cosign.tag_for(digest, suffix)) for suffix in SUFFIXES}


def test_promote_copies_what_it_verified_even_if_the_source_changes_meanwhile(staging, prod: str, tmp_path: Path,
                                                                             capsys, monkeypatch) -> None:
    registry, digest = staging
    source = Registry.for_reference(parse(f"{registry}/staging/fraud"))
    verified_digests = _digests(source, "staging/fraud", digest)
    real_verify, seen = promote_module.verify, []

    def verify_then_swap(*args, **kwargs) -> Verified:
        verified = real_verify(*args, **kwargs)
        seen.append(verified)
        # Whoever can push to the source swaps the signature and the attestations right after the check.
        put_attached(source, "staging/fraud", digest, "sig",
                     [simple_signed(cosign.simple_signing_payload("staging/fraud", digest), OTHER_KEY)])
        put_attached(source, "staging/fraud", digest, "att", [cosign.Layer(cosign.DSSE_ENVELOPE, b"{junk", {})])
        return verified

    monkeypatch.setattr(promote_module, "verify", verify_then_swap)
    public_key = write_public_key(KEY, tmp_path / "cosign.pub")
    promote = ["promote", f"{registry}/staging/fraud@{digest}", f"{prod}/fraud:1.0.0", "--key", public_key]
    assert aegis.main(promote) == 0
    assert f"{prod}/fraud:1.0.0 -> {digest}" in capsys.readouterr().out
    assert _digests(source, "staging/fraud", digest)["sig"] != verified_digests["sig"]  # the swap happened
    target = Registry.for_reference(parse(f"{prod}/fraud"))
    assert _digests(target, "fraud", digest) == verified_digests
    assert {s: a.digest for s, a in seen[0].attached.items()} == verified_digests
    monkeypatch.undo()
    assert aegis.main(["verify", f"{prod}/fraud@{digest}", "--key", public_key, "--identity", IDENTITY]) == 0
    assert capsys.readouterr().err == ""


def test_promote_never_overwrites_the_targets_signatures(staging, prod: str, tmp_path: Path, capsys) -> None:
    registry, digest = staging
    public_key = write_public_key(KEY, tmp_path / "cosign.pub")
    target = Registry.for_reference(parse(f"{prod}/fraud"))
    # The target already holds a signature of this digest, by another key (say, the production signer's).
    existing = put_attached(target, "fraud", digest, "sig",
                            [simple_signed(cosign.simple_signing_payload("fraud", digest), OTHER_KEY)])
    promote = ["promote", f"{registry}/staging/fraud@{digest}", f"{prod}/fraud:1.0.0", "--key", public_key]
    assert aegis.main(promote) == 1
    err = capsys.readouterr().err
    tag = cosign.tag_for(digest, "sig")
    assert err.startswith(f"aegis: {prod}/fraud:{tag} already holds {existing}, not the verified sha256:")
    assert "refusing to overwrite the target's signatures" in err and err.count("\n") == 1
    # Nothing was copied: the signature there is intact, and neither the image nor its version tag is there.
    assert _digests(target, "fraud", digest) == {"sig": existing, "att": None, model_signature.SUFFIX: None}
    assert target.get_manifest("fraud", digest) is None and target.manifest_digest("fraud", "1.0.0") is None

    # Once the two are reconciled (here: the target's signature removed), promotion goes through; again, it
    # finds everything in place and changes nothing.
    target.transport.request("DELETE", f"/v2/fraud/manifests/{existing}", "repository:fraud:*", expect=(202,))
    assert aegis.main(promote) == 0
    assert f"{prod}/fraud:1.0.0 -> {digest}" in capsys.readouterr().out
    assert aegis.main(promote) == 0
    again = capsys.readouterr().out.splitlines()
    assert again == [f"copied {digest} (0 blob(s) transferred)",
                     *(f"{cosign.tag_for(digest, suffix)} already there" for suffix in SUFFIXES),
                     f"{prod}/fraud:1.0.0 already -> {digest}"]


def test_promote_within_a_registry_mounts_the_verified_blobs(staging, tmp_path: Path, capsys) -> None:
    registry, digest = staging
    public_key = write_public_key(KEY, tmp_path / "cosign.pub")
    assert aegis.main(["promote", f"{registry}/staging/fraud@{digest}", f"{registry}/prod/fraud:1.0.0",
                       "--key", public_key]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:4] == [f"copied {digest} (0 blob(s) transferred)",
                       *(f"copied {cosign.tag_for(digest, suffix)} (0 blob(s) transferred)" for suffix in SUFFIXES)]
    client = Registry.for_reference(parse(f"{registry}/prod/fraud"))
    assert _digests(client, "prod/fraud", digest) == _digests(client, "staging/fraud", digest)
