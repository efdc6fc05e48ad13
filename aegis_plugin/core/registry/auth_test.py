import base64
import json
from pathlib import Path

import pytest

from aegis_plugin.core.registry.auth import AuthError, Credentials, lookup


def _config(tmp_path: Path, config: dict) -> dict:
    (tmp_path / "config.json").write_text(json.dumps(config))
    return {"DOCKER_CONFIG": str(tmp_path)}


def test_environment_wins(tmp_path: Path) -> None:
    env = {**_config(tmp_path, {"auths": {"r.io": {"auth": base64.b64encode(b"a:b").decode()}}}),
           "AEGIS_REGISTRY_USERNAME": "ci", "AEGIS_REGISTRY_PASSWORD": "secret"}
    assert lookup("r.io", env) == Credentials("ci", "secret")
    with pytest.raises(AuthError, match="set both"):
        lookup("r.io", {"AEGIS_REGISTRY_USERNAME": "ci"})


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
    with pytest.raises(AuthError, match="credential helper 'ecr-login'.*AEGIS_REGISTRY_USERNAME"):
        lookup("r.io", env)


def test_no_config_means_anonymous(tmp_path: Path) -> None:
    assert lookup("r.io", {"DOCKER_CONFIG": str(tmp_path / "none")}) is None
