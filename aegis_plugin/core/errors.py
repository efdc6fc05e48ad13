"""The one root of the errors the core reports to a user, as sigstore-python's `errors.Error`: an entry point
catches `AegisError` once and prints its message as one `aegis: …` line; anything else is a bug and keeps its
traceback. (The runtime in images, `core/runtime/`, ships alone and has errors of its own.)"""
from __future__ import annotations


class AegisError(Exception):
    """A failure the user can fix; the message is one line saying what and where."""
