"""A function run in a forked child while this process goes on, its result or error sent back pickled.

The SBOM step has two halves that share nothing but the inventory: CycloneDX (build and schema validation,
jsonschema's import included: 0.24 s on the demo) and the completeness check with SPDX 2.3 (spdx-tools, 0.21 s).
Both are pure Python and every handler edit waits for the step, so they run on two cores. When this was
measured (CycloneDX then took 0.34 s), the demo's step took 0.72-0.73 s one after the other and 0.47-0.49 s
side by side (same outputs, four runs each, alternated).
"""
from __future__ import annotations

import os
import pickle
import signal
import sys
import traceback
from typing import Callable, Generic, Optional, TypeVar

from aegis_plugin.core.errors import AegisError

T = TypeVar("T")


class ForkedError(AegisError, RuntimeError):
    """The child died without an answer (killed, out of memory)."""


class Forked(Generic[T]):
    """`Forked(fn)` starts `fn()` in a child process at once; `result()` waits for it and returns its value, or
    raises its exception (one that does not pickle comes back as a RuntimeError with its traceback). `cancel()`
    stops it, whenever called. Use one before any thread starts (a fork copies only the caller's thread)."""

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
                except BaseException as e:  # sent to the parent, which raises it
                    payload = _pickled_error(e)
                with os.fdopen(write, "wb") as f:
                    f.write(payload)
            finally:
                os._exit(0)
        os.close(write)
        self._pid: Optional[int] = pid
        self._read: Optional[int] = read

    def result(self) -> T:
        assert self._read is not None and self._pid is not None, "result() or cancel() was called already"
        with os.fdopen(self._read, "rb") as f:
            self._read = None
            payload = f.read()
        _, status = os.waitpid(self._pid, 0)
        self._pid = None
        if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and payload):
            code = os.waitstatus_to_exitcode(status)
            how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
            raise ForkedError(f"a child process of this step died without an answer ({how})")
        ok, value = pickle.loads(payload)
        if ok:
            return value  # type: ignore[no-any-return]
        raise value

    def cancel(self) -> None:
        if self._read is not None:
            os.close(self._read)
            self._read = None
        if self._pid is not None:
            try:
                os.kill(self._pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(self._pid, 0)
            self._pid = None


def _pickled_error(error: BaseException) -> bytes:
    try:
        payload = pickle.dumps((False, error))
        pickle.loads(payload)  # an exception whose constructor takes other arguments does not come back
        return payload
    except Exception:
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__)).strip()
        return pickle.dumps((False, RuntimeError(text)))
