"""Which credentials a registry client gets: only those bound to the registry the reference names."""
from __future__ import annotations

import base64
from pathlib import Path

import pytest

from aegis_plugin.core.registry.client import Registry
from aegis_plugin.core.registry.reference import parse
from aegis_plugin.core.registry.testutil import recording_server
from aegis_plugin.core.registry.transport import RegistryError

BASIC = "Basic " + base64.b64encode(b"ci:pw").decode()


def _basic_registry(path: str, authorization):
    if authorization != BASIC:
        return 401, {"WWW-Authenticate": 'Basic realm="reg"'}, b"{}"
    return 404, {}, b"{}"  # logged in: no such manifest


def test_credentials_for_one_registry_are_not_sent_to_another(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.setenv("AEGIS_REGISTRY_USERNAME", "ci")
    monkeypatch.setenv("AEGIS_REGISTRY_PASSWORD", "pw")
    with recording_server(_basic_registry) as (address, seen):
        port = address.rsplit(":", 1)[1]
        monkeypatch.setenv("AEGIS_REGISTRY_HOST", f"127.0.0.2:{port}")  # host A; the reference names host B
        client = Registry.for_reference(parse(f"{address}/ml/x:1.0.0"))
        with pytest.raises(RegistryError, match=f"the registry wants a login.*AEGIS_REGISTRY_HOST={address}"):
            client.get_manifest("ml/x", "1.0.0")
        assert [authorization for _, _, authorization in seen] == [None]

        monkeypatch.setenv("AEGIS_REGISTRY_HOST", address)
        assert Registry.for_reference(parse(f"{address}/ml/x:1.0.0")).get_manifest("ml/x", "1.0.0") is None
        assert seen[-1][2] == BASIC
