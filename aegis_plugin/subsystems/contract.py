"""Options of the contract test that `pants test` runs against each built model image."""
from __future__ import annotations

from pants.option.option_types import IntOption, SkipOption, StrOption
from pants.option.subsystem import Subsystem
from pants.util.strutil import help_text


class ContractTestSubsystem(Subsystem):
    options_scope = "aegis-contract-test"
    name = "Aegis contract test"
    help = help_text(
        """
        The contract test of a `model_package`: runs the built image (unpacked from its OCI layout and
        started with bwrap, no Docker daemon, loopback-only network) and checks its inference API against
        the model's signature and examples.
        """
    )

    skip = SkipOption("test")
    resolve = StrOption(
        default="contract-test",
        help=help_text(
            """
            The Python resolve whose lock (installed whole) holds the test driver's third-party
            requirements: `tritonclient[http]` and `numpy`, pinned by hash.
            """
        ),
    )
    ready_timeout = IntOption(
        default=60,
        help="Seconds the image may take to report ready before the test fails.",
    )
