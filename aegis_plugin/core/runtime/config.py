"""The server's configuration, read from its environment (AEGIS_*)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Config:
    app_dir: str = "/app"
    host: str = "0.0.0.0"
    port: int = 8080
    max_body_bytes: int = 16 * 1024 * 1024
    max_connections: int = 256
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    shutdown_timeout: float = 8.0
    idle_timeout: float = 75.0
    io_timeout: float = 30.0
    nvidia_device_dir: str = "/dev"
    libcuda: str = "libcuda.so.1"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "Config":
        defaults = cls()

        def number(name: str, default: Any, kind: type, low: float, high: float = math.inf) -> Any:
            raw = environ.get(name, "").strip()
            if not raw:
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise ConfigError(f"{name}={raw!r} is not a number") from None
            if not low <= value <= high:
                raise ConfigError(f"{name}={raw!r} is out of range [{low}, {high}]")
            return value

        return cls(
            app_dir=environ.get("AEGIS_APP_DIR") or defaults.app_dir,
            host=environ.get("AEGIS_HOST") or defaults.host,
            port=number("AEGIS_PORT", defaults.port, int, 0, 65535),
            max_body_bytes=number("AEGIS_MAX_BODY_BYTES", defaults.max_body_bytes, int, 0),
            max_connections=number("AEGIS_MAX_CONNECTIONS", defaults.max_connections, int, 1, 65536),
            header_timeout=number("AEGIS_HEADER_TIMEOUT", defaults.header_timeout, float, 0.01, 86400),
            body_timeout=number("AEGIS_BODY_TIMEOUT", defaults.body_timeout, float, 0.01, 86400),
            shutdown_timeout=number("AEGIS_SHUTDOWN_TIMEOUT", defaults.shutdown_timeout, float, 0, 86400),
            idle_timeout=number("AEGIS_IDLE_TIMEOUT", defaults.idle_timeout, float, 0.01, 86400),
            io_timeout=number("AEGIS_IO_TIMEOUT", defaults.io_timeout, float, 0.01, 86400),
            nvidia_device_dir=environ.get("AEGIS_NVIDIA_DEVICE_DIR") or defaults.nvidia_device_dir,
            libcuda=environ.get("AEGIS_LIBCUDA") or defaults.libcuda,
        )
