import http.server
import json
from typing import Iterator

import pytest

from aegis_plugin.core.python.interpreter import Interpreter
from aegis_plugin.core.python.requirements_lock import parse
from aegis_plugin.core.python.simple_index import PackageIndexError, locate
from aegis_plugin.testutil.local_servers import serving

A, B, C, D = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)
LOCK = f"""\
numpy==2.4.6 \\
    --hash=sha256:{A} \\
    --hash=sha256:{B} \\
    --hash=sha256:{C}
colorama==0.4.6 ; sys_platform == 'win32' \\
    --hash=sha256:{D}
"""
PAGES = {
    "numpy": [
        {"filename": "numpy-2.4.6.tar.gz", "url": "../../files/numpy-2.4.6.tar.gz", "hashes": {"sha256": A}, "size": 1},
        {"filename": "numpy-2.4.6-cp311-cp311-manylinux_2_17_x86_64.whl", "url": "/files/old.whl",
         "hashes": {"sha256": B}, "size": 2},
        {"filename": "numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl", "url": "/files/new.whl#sha256=" + C,
         "hashes": {"sha256": C}, "size": 3},
        # The best tag of all, but not a file the lock pins: never chosen.
        {"filename": "numpy-2.4.6-cp311-cp311-manylinux_2_34_x86_64.whl", "url": "/files/unpinned.whl",
         "hashes": {"sha256": "e" * 64}, "size": 4},
        {"filename": "numpy-2.4.6-cp311-cp311-manylinux_2_17_aarch64.whl", "url": "/files/arm.whl",
         "hashes": {"sha256": A}, "size": 5},
    ],
}


@pytest.fixture
def index() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            name = self.path.strip("/").split("/")[-1]
            if name not in PAGES:
                self.send_error(404)
                return
            body = json.dumps({"meta": {"api-version": "1.1"}, "files": PAGES[name]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.pypi.simple.v1+json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as port:
        yield f"http://127.0.0.1:{port}/simple"


def test_the_best_pinned_wheel_for_each_platform(index: str) -> None:
    (amd64,) = locate(parse(LOCK), index, Interpreter("linux/amd64"), "runtime.lock")
    assert (amd64.filename, amd64.sha256, amd64.size) == ("numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl", C, 3)
    assert amd64.url == index.replace("/simple", "/files/new.whl")  # absolute, without the fragment
    (arm64,) = locate(parse(LOCK), index, Interpreter("linux/arm64"), "runtime.lock")
    assert arm64.filename.endswith("aarch64.whl") and arm64.sha256 == A


def test_no_wheel_for_the_platform(index: str) -> None:
    lock = f"numpy==2.4.6 \\\n    --hash=sha256:{B} \\\n    --hash=sha256:{C}\n"  # two x86_64 wheels
    with pytest.raises(PackageIndexError, match="numpy==2.4.6 in runtime.lock has no wheel for CPython 3.11 on "
                                                "linux/arm64 among its pinned files"):
        locate(parse(lock), index, Interpreter("linux/arm64"), "runtime.lock")


def test_index_failures_are_one_line(index: str) -> None:
    with pytest.raises(PackageIndexError, match=r"cannot read http://127.0.0.1:\d+/simple/idna/: HTTP 404"):
        locate(parse(f"idna==3.20 \\\n    --hash=sha256:{A}\n"), index, Interpreter("linux/amd64"), "x.lock")
    PAGES["nosize"] = [{"filename": "nosize-1-py3-none-any.whl", "url": "/n.whl", "hashes": {"sha256": A}}]
    with pytest.raises(PackageIndexError, match="gives no size for nosize-1-py3-none-any.whl"):
        locate(parse(f"nosize==1 \\\n    --hash=sha256:{A}\n"), index, Interpreter("linux/amd64"), "x.lock")
