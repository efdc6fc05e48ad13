"""Options of the guards `pants lint` runs on `model_package` images (and `package`, for the pitfalls)."""
from __future__ import annotations

from pants.option.option_types import SkipOption, StrListOption, StrOption
from pants.option.subsystem import Subsystem
from pants.util.strutil import help_text

from aegis_plugin.core.guards.defaults import DENY_DEBIAN, DENY_PYTHON, SEVERITIES


class GuardsSubsystem(Subsystem):
    options_scope = "aegis-guards"
    name = "Aegis guards"
    help = help_text(
        """
        The guards on every `model_package` image. `pants lint` runs them all and writes `guards.json` and
        `guards.sarif` per target under `dist/lint/aegis-guards/`: the vulnerability gate (every Debian
        package and Python distribution of the SBOM against the pinned OSV database of `database`; findings
        at or above `fail_at` fail unless a VEX document accepts them) and the pitfalls (denied and
        training-only packages, the target's `size_budget`, an `accelerator` the CUDA builds disagree with).
        `pants package` refuses the pitfalls too. `:latest` tags, base images not pinned by digest, unpinned
        requirements and incomplete model cards are refused before that, when targets and layers are built.
        """
    )

    skip = SkipOption("lint")
    resolve = StrOption(
        default="scan",
        help=help_text(
            """
            The Python resolve (installed whole) of the guards: `packaging` (PEP 440), `python-debian` (dpkg
            version order), `cvss` (CVSS v3/v4 scores) and `PyYAML` (OSV records in YAML), pinned by hash.
            """
        ),
    )
    database = StrOption(
        default=None,
        help=help_text(
            """
            Address of the `osv_database` target (OSV records pinned by sha256) the vulnerability gate
            scans against, e.g. `//3rdparty/vulndb:osv`. Without one, `pants lint` fails: the gate is never
            skipped silently.
            """
        ),
    )
    fail_at = StrOption(
        default="high",
        help=help_text(
            f"""
            The lowest severity ({', '.join(SEVERITIES)}) that fails the gate; lower ones are reported as
            warnings. A target's `fail_on_severity` overrides it.
            """
        ),
    )
    unknown_severity = StrOption(
        default="high",
        help="What an advisory that rates no severity (no CVSS vector, no qualitative rating) counts as.",
    )
    vex = StrListOption(
        default=[],
        help=help_text(
            """
            Repository-wide VEX documents (OpenVEX or CycloneDX VEX JSON, paths relative to the build root)
            that accept findings for every model; a target's `vex` field adds its own.
            """
        ),
    )
    deny_python = StrListOption(
        default=list(DENY_PYTHON),
        help=help_text(
            """
            Python distributions (names or `fnmatch` globs) a runtime image must not carry: notebooks,
            experiment trackers, dataset libraries, test and build tools. Use `+[...]` to add to them.
            """
        ),
    )
    deny_debian = StrListOption(
        default=list(DENY_DEBIAN),
        help="Debian packages (names or `fnmatch` globs) a runtime image must not carry: compilers, headers, build tools.",
    )
    training_resolves = StrListOption(
        default=["training"],
        help=help_text(
            """
            Resolves that hold training-only requirements: a distribution one of them requires directly and
            the image's runtime resolve does not is an error when it ships in the image. Their requirement
            targets are read from the BUILD file in the directory of each resolve's lockfile.
            """
        ),
    )
