"""The Debian layer rule on Pants' engine, against a mirror on 127.0.0.1 that no longer serves a locked package
(mirrors drop superseded versions): Pants' own downloader fails, and the rule turns that into one line naming
the target and the way out, without the mirror's credentials."""
from __future__ import annotations

import pytest

from pants.backend.python import register as python_backend
from pants.core import register as core_backend
from pants.engine.internals.scheduler import ExecutionError
from pants.testutil.rule_runner import QueryRule, RuleRunner

from aegis_plugin import register as aegis_backend
from aegis_plugin.testutil.local_servers import serving_guarded_file
from aegis_plugin.util_rules.core_process import AegisBuildError
from aegis_plugin.util_rules.layers import DebianLayerRequest, Layer
from aegis_plugin.util_rules.layers_test import DEB

USER, PASSWORD = "apt-reader", "m1rr0r-s3cret"


@pytest.fixture
def rule_runner() -> RuleRunner:
    rule_runner = RuleRunner(
        rules=[*core_backend.rules(), *python_backend.rules(), *aegis_backend.rules(),
               QueryRule(Layer, [DebianLayerRequest])],
    )
    return rule_runner


def test_a_package_the_mirror_dropped(rule_runner: RuleRunner) -> None:
    lock = DEB.format(suite="bookworm", sha256="a" * 64)
    # The mirror serves another file; the locked one is gone (404, with the requested path echoed back).
    with serving_guarded_file("/debian/pool/main/o/other.deb", b"x", USER, PASSWORD, "q", echo=True) as port:
        mirror = f"http://{USER}:{PASSWORD}@127.0.0.1:{port}/debian/"
        rule_runner.set_options([f"--aegis-debian-mirrors={{'bookworm': '{mirror}'}}"], env_inherit={"PATH"})
        lockfile = rule_runner.make_snapshot({"base/b.lock": lock}).digest
        with pytest.raises(ExecutionError) as error:
            rule_runner.request(Layer, [DebianLayerRequest("models/x:x: field `base_image`", lockfile, "base/b.lock")])
    (cause,) = error.value.wrapped_exceptions
    assert isinstance(cause, AegisBuildError)
    message = str(cause)
    assert message.startswith("models/x:x: field `base_image`: a locked Debian package could not be fetched (")
    assert message.endswith(
        "); mirrors drop superseded versions: refresh the lock with `build-support/lock_debian.py` or point "
        "`[aegis].debian_mirrors` at a snapshot archive"
    )
    assert "404" in message and "\n" not in message
    assert PASSWORD not in message and USER not in message
