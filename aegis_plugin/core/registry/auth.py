"""Where registry credentials come from: the environment, then the Docker config, as `docker login` leaves it.
Credentials are bound to one registry host: an image reference that names another registry never gets them.

- `AEGIS_REGISTRY_USERNAME` and `AEGIS_REGISTRY_PASSWORD` (a password or a token), for the registry named by
  `AEGIS_REGISTRY_HOST` (host[:port], exactly as image references spell it, e.g. `ghcr.io` or
  `127.0.0.1:5000`); they are refused without it;
- `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`): `auths.<registry>.auth` (base64 of
  `user:password`), or `username`/`password`, or an `identitytoken`.

`AEGIS_REGISTRY_TOKEN_HOSTS` (host[:port], comma-separated) names token services on other hosts that may
receive a registry's credentials when its Bearer challenge points there (e.g. `auth.docker.io`); see
transport.py for when credentials are sent at all.

Credential helpers (`credsStore`, `credHelpers`) run programs the build cannot see: a registry served only by
a helper is refused with a message saying how to pass the credentials instead.
"""
from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from typing import FrozenSet, Mapping, Optional

from aegis_plugin.core.errors import AegisError

USERNAME_ENV = "AEGIS_REGISTRY_USERNAME"
PASSWORD_ENV = "AEGIS_REGISTRY_PASSWORD"
HOST_ENV = "AEGIS_REGISTRY_HOST"
TOKEN_HOSTS_ENV = "AEGIS_REGISTRY_TOKEN_HOSTS"


class AuthError(AegisError):
    pass


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str  # a password, a token, or an identity token (then username is "<token>")

    def __repr__(self) -> str:  # never print a secret
        return f"Credentials(username={self.username!r}, password=***)"


def docker_config_path(environ: Mapping[str, str]) -> str:
    return os.path.join(environ.get("DOCKER_CONFIG") or os.path.join(environ.get("HOME", "~"), ".docker"),
                        "config.json")


def lookup(registry: str, environ: Mapping[str, str] = os.environ) -> Optional[Credentials]:
    """The credentials for `registry` (host[:port]), or None to try anonymously."""
    username, password = environ.get(USERNAME_ENV), environ.get(PASSWORD_ENV)
    if username or password:
        if not (username and password):
            raise AuthError(f"set both {USERNAME_ENV} and {PASSWORD_ENV}, or neither")
        host = _host(environ.get(HOST_ENV, "").strip().lower())
        if not host:
            raise AuthError(f"set {HOST_ENV} to the registry (host[:port]) that {USERNAME_ENV} and "
                            f"{PASSWORD_ENV} are for")
        if host == registry.lower():
            return Credentials(username, password)
    path = docker_config_path(environ)
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise AuthError(f"{path}: cannot read the Docker config: {e}") from None
    for key, entry in (config.get("auths") or {}).items():
        if _host(key).lower() == registry.lower():
            return _from_entry(entry, path, key)
    helper = (config.get("credHelpers") or {}).get(registry) or config.get("credsStore")
    if helper:
        raise AuthError(
            f"{path}: credentials for {registry} are in the credential helper {helper!r}, which Aegis does not "
            f"run: set {USERNAME_ENV}, {PASSWORD_ENV} and {HOST_ENV}={registry} instead"
        )
    return None


def token_hosts(environ: Mapping[str, str] = os.environ) -> FrozenSet[str]:
    """The token services on other hosts trusted with registry credentials (`AEGIS_REGISTRY_TOKEN_HOSTS`)."""
    entries = environ.get(TOKEN_HOSTS_ENV, "").replace(",", " ").split()
    return frozenset(_host(entry.lower()) for entry in entries)


def _host(key: str) -> str:
    """`https://registry.example.com/v1/` and `registry.example.com` name the same registry."""
    for prefix in ("https://", "http://"):
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key.split("/", 1)[0]


def _from_entry(entry: Mapping[str, str], path: str, key: str) -> Credentials:
    if entry.get("identitytoken"):
        return Credentials("<token>", entry["identitytoken"])
    if entry.get("auth"):
        try:
            username, sep, password = base64.b64decode(entry["auth"]).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            sep = ""
        if not sep:
            raise AuthError(f"{path}: auths[{key!r}].auth is not base64 of user:password")
        return Credentials(username, password)
    if entry.get("username") and entry.get("password"):
        return Credentials(entry["username"], entry["password"])
    raise AuthError(f"{path}: auths[{key!r}] has no auth, username/password or identitytoken")
