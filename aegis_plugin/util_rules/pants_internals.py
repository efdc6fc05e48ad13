"""What the plugin relies on of Pants 2.17 beyond its public rule API, in one place: a Pants upgrade re-checks
this module (the tests that use each function fail, not pass, when Pants changes underneath)."""
from __future__ import annotations

from pants.engine.internals.native_engine import IntrinsicError

__all__ = ["IntrinsicError", "is_missing_digest"]


def is_missing_digest(error: BaseException) -> bool:
    """Whether a failed `Get` failed because one of its input digests is in no store (local or remote cache):
    Pants 2.17 says so only in the message ("Missing digest …", "… not present in …")."""
    return "Missing digest" in str(error) or "not present in" in str(error)
