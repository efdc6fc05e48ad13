import time

import pytest

from aegis_plugin.core.sign import keyless
from aegis_plugin.core.sign.signer import SigningError
from aegis_plugin.core.sign.testutil import unsigned_jwt as jwt


def test_the_certificate_identity_is_predicted_from_the_token() -> None:
    github = {"iss": keyless.GITHUB_ISSUER, "sub": "repo:acme/models:ref:refs/heads/main",
              "job_workflow_ref": "acme/models/.github/workflows/main.yml@refs/heads/main"}
    assert keyless.certificate_identity(keyless.claims(jwt(github))) == \
        "https://github.com/acme/models/.github/workflows/main.yml@refs/heads/main"
    google = {"iss": "https://accounts.google.com", "sub": "1234", "email": "ci@acme.example"}
    assert keyless.certificate_identity(keyless.claims(jwt(google))) == "ci@acme.example"
    other = {"iss": "https://gitlab.example/", "sub": "project_path:acme/models:ref_type:branch:ref:main"}
    assert keyless.certificate_identity(other) == "project_path:acme/models:ref_type:branch:ref:main"


def test_the_token_comes_from_the_environment_or_a_clear_error() -> None:
    token = jwt({"iss": "https://accounts.google.com", "exp": int(time.time()) + 60})
    assert keyless.identity_token({keyless.TOKEN_ENV: f" {token}\n"}) == token
    with pytest.raises(SigningError, match="keyless signing needs an OIDC identity token: set SIGSTORE_ID_TOKEN"):
        keyless.identity_token({})
    with pytest.raises(SigningError, match="SIGSTORE_ID_TOKEN is not a JWT"):
        keyless.claims("not-a-token")


def test_an_unreachable_sigstore_is_one_clear_error(tmp_path, monkeypatch) -> None:
    """The real sigstore-python client, with no Sigstore reachable (no network here) and an empty TUF cache."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    token = jwt({"iss": "https://accounts.google.com", "email": "ci@acme.example", "sub": "1", "aud": "sigstore",
                 "iat": int(time.time()), "exp": int(time.time()) + 600})
    with pytest.raises(SigningError, match=r"^keyless signing through Sigstore \(production\) failed: "):
        with keyless.sigstore_signer(token):
            pass
