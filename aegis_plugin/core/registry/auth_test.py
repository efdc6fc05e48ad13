import base64
import json
from pathlib import Path

import pytest

from aegis_plugin.core.registry.auth import AuthError, Credentials, lookup, token_hosts


def _config(tmp_path: Path, config: dict) -> dict:
    (tmp_path / "config.json").write_text(json.dumps(config))
    return {"DOCKER_CONFIG": str(tmp_path)}


def test_environment_wins(tmp_path: Path) -> None:
    env = {**_config(tmp_path, {"auths": {"r.io": {"auth": base64.b64encode(b"a:b").decode()}}}),
           "AEGIS_REGISTRY_USERNAME": "ci", "AEGIS_REGISTRY_PASSWORD": "secret", "AEGIS_REGISTRY_HOST": "r.io"}
    assert lookup("r.io", env) == Credentials("ci", "secret")
    with pytest.raises(AuthError, match="set both"):
        lookup("r.io", {"AEGIS_REGISTRY_USERNAME": "ci"})


def test_environment_credentials_are_only_for_their_host(tmp_path: Path) -> None:
    env = {**_config(tmp_path, {"auths": {"b.io": {"username": "b", "password": "pb"}}}),
           "AEGIS_REGISTRY_USERNAME": "ci", "AEGIS_REGISTRY_PASSWORD": "secret",
           "AEGIS_REGISTRY_HOST": "https://A.io:5000/"}
    assert lookup("a.io:5000", env) == Credentials("ci", "secret")
    assert lookup("a.io", env) is None  # another port is another registry
    assert lookup("c.io", env) is None
    assert lookup("b.io", env) == Credentials("b", "pb")  # the Docker config still serves the others


def test_environment_credentials_without_a_host_are_refused(tmp_path: Path) -> None:
    env = {"DOCKER_CONFIG": str(tmp_path), "AEGIS_REGISTRY_USERNAME": "ci", "AEGIS_REGISTRY_PASSWORD": "secret"}
    with pytest.raises(AuthError, match=r"^set AEGIS_REGISTRY_HOST to the registry \(host\[:port\]\)") as e:
        lookup("r.io", env)
    assert "secret" not in str(e.value) and "\n" not in str(e.value)


def test_token_hosts() -> None:
    assert token_hosts({"AEGIS_REGISTRY_TOKEN_HOSTS": "Auth.Docker.io, https://t.io:8443/token"}) == {
        "auth.docker.io", "t.io:8443"}
    assert token_hosts({}) == frozenset()


def test_docker_config_forms(tmp_path: Path) -> None:
    env = _config(tmp_path, {"auths": {
        "https://r.io/v1/": {"auth": base64.b64encode(b"user:p:w").decode()},
        "s.io": {"username": "u", "password": "p"},
        "t.io": {"identitytoken": "tok"},
    }})
    assert lookup("r.io", env) == Credentials("user", "p:w")
    assert lookup("s.io", env) == Credentials("u", "p")
    assert lookup("t.io", env) == Credentials("<token>", "tok")
    assert lookup("other.io", env) is None
    assert "secret" not in repr(Credentials("u", "secret"))


def test_credential_helpers_are_refused_with_a_way_out(tmp_path: Path) -> None:
    env = _config(tmp_path, {"credHelpers": {"r.io": "ecr-login"}})
    with pytest.raises(AuthError, match="credential helper 'ecr-login'.*AEGIS_REGISTRY_USERNAME.*AEGIS_REGISTRY_HOST=r.io"):
        lookup("r.io", env)


def test_no_config_means_anonymous(tmp_path: Path) -> None:
    assert lookup("r.io", {"DOCKER_CONFIG": str(tmp_path / "none")}) is None
