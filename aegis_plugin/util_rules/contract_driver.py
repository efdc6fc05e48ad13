"""The PEX that runs the image outside Pants' own processes: the contract test driver and `pants run`.

It is the core's sources plus the `contract-test` resolve (tritonclient[http], numpy); `main` names the entry
point: `aegis_plugin.core.contract.cli` (the test) or `aegis_plugin.core.contract.serve` (`pants run`).
"""
from __future__ import annotations

from dataclasses import dataclass

from pants.backend.python.target_types import EntryPoint
from pants.backend.python.util_rules.pex import PexRequest
from pants.backend.python.util_rules.pex_requirements import EntireLockfile, Lockfile, Resolve
from pants.engine.rules import Get, collect_rules, rule

from aegis_plugin.subsystems.contract import ContractTestSubsystem
from aegis_plugin.util_rules.core_process import CORE_INTERPRETER_CONSTRAINTS, CoreSources

TEST_MAIN = "aegis_plugin.core.contract.cli"
SERVE_MAIN = "aegis_plugin.core.contract.serve"


@dataclass(frozen=True)
class ContractDriverRequest:
    main: str


@rule
async def contract_driver_pex_request(
    request: ContractDriverRequest, subsystem: ContractTestSubsystem, core: CoreSources
) -> PexRequest:
    # The resolve's lock is a hash-pinned requirements file, so it is installed whole.
    lockfile = await Get(Lockfile, Resolve(subsystem.resolve, use_entire_lockfile=True))
    return PexRequest(
        output_filename=f"{request.main.rsplit('.', 1)[-1]}.pex",
        internal_only=True,
        sources=core.digest,
        requirements=EntireLockfile(lockfile),
        interpreter_constraints=CORE_INTERPRETER_CONSTRAINTS,
        main=EntryPoint(request.main),
    )


def rules():
    return collect_rules()
