"""The one error family of this package, so callers can report any Debian problem in one line."""

from __future__ import annotations


class DebianError(Exception):
    """A spec, index, lock or .deb is wrong; the message names the package and what to do."""
