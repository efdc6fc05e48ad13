from __future__ import annotations

import os
import signal
import time

import pytest

from aegis_plugin.core.errors import AegisError
from aegis_plugin.core.sbom.forked import Forked, ForkedError


class _Refused(AegisError):
    pass


class _TwoArguments(Exception):
    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a} and {b}")


def test_the_value_comes_back_from_another_process() -> None:
    child = Forked(lambda: (os.getpid(), b"document", ["a problem"]))
    pid, document, problems = child.result()
    assert pid != os.getpid() and document == b"document" and problems == ["a problem"]


def test_an_error_comes_back_as_itself() -> None:
    def refuse() -> None:
        raise _Refused("the card has no license")

    with pytest.raises(_Refused, match="^the card has no license$"):
        Forked(refuse).result()


def test_an_error_that_cannot_come_back_as_itself_comes_with_its_traceback() -> None:
    def fail() -> None:
        raise _TwoArguments("this", "that")

    with pytest.raises(RuntimeError, match=r"(?s)Traceback.*in fail.*_TwoArguments: this and that"):
        Forked(fail).result()


def test_a_child_that_dies_without_an_answer_is_one_line() -> None:
    with pytest.raises(ForkedError, match=r"^a child process of this step died without an answer \(exit status 3\)$"):
        Forked(lambda: os._exit(3)).result()
    with pytest.raises(ForkedError, match=r"\(killed by signal 9\)$"):
        Forked(lambda: os.kill(os.getpid(), signal.SIGKILL)).result()


def test_cancel_stops_the_child() -> None:
    started = time.monotonic()
    child = Forked(lambda: time.sleep(60))
    pid = child._pid
    child.cancel()
    assert time.monotonic() - started < 10
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # type: ignore[arg-type]  # reaped: no such process any more
    child.cancel()  # again, or after result(): nothing left to stop
