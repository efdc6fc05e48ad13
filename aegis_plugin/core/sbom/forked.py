"""A function run in a forked child while this process goes on, its result or error sent back pickled.

The SBOM step has two halves that share nothing but the inventory: CycloneDX (cyclonedx-python-lib's import,
build and schema validation, 0.34 s on the demo) and the completeness check with SPDX 2.3 (spdx-tools, 0.25 s).
Both are pure Python and every handler edit waits for the step, so they run on two cores: the demo's step took
0.72-0.73 s one after the other and 0.47-0.49 s side by side (same outputs, four runs each, alternated).
"""
from __future__ import annotations

import os
import pickle
import signal
import sys
import traceback
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class ForkedError(RuntimeError):
    """The child died or failed with an error that could not be sent back as itself."""


class Forked(Generic[T]):
    """`Forked(fn)` starts `fn()` in a child process at once; `result()` waits for it and returns its value, or
    raises its exception. `cancel()` stops it. Use one before any thread starts (a fork copies only the caller's
    thread)."""

    def __init__(self, fn: Callable[[], T]) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(read)
            try:
                try:
                    payload = pickle.dumps((True, fn()))
                except BaseException as e:  # noqa: B036 - sent to the parent, which raises it
                    payload = _pickled_error(e)
                with os.fdopen(write, "wb") as f:
                    f.write(payload)
            finally:
                os._exit(0)
        os.close(write)
        self._pid, self._read = pid, read

    def result(self) -> T:
        with os.fdopen(self._read, "rb") as f:
            payload = f.read()
        _, status = os.waitpid(self._pid, 0)
        if not payload:
            raise ForkedError(f"the child process died (wait status {status}) without an answer")
        ok, value = pickle.loads(payload)
        if ok:
            return value  # type: ignore[no-any-return]
        raise value

    def cancel(self) -> None:
        os.close(self._read)
        try:
            os.kill(self._pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(self._pid, 0)


def _pickled_error(error: BaseException) -> bytes:
    try:
        payload = pickle.dumps((False, error))
        pickle.loads(payload)  # an exception whose constructor takes other arguments does not come back
        return payload
    except Exception:
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__)).strip()
        return pickle.dumps((False, ForkedError(text)))
