"""The one error family of this package, so callers can report any Debian problem in one line."""

from __future__ import annotations

from aegis_plugin.core.errors import AegisError


class DebianError(AegisError):
    """A spec, index, lock or .deb is wrong; the message names the package and what to do."""
