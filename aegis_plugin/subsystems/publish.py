"""Options of `pants publish` for model images."""
from __future__ import annotations

from pants.option.option_types import BoolOption, StrOption
from pants.option.subsystem import Subsystem
from pants.util.strutil import help_text


class PublishSubsystem(Subsystem):
    options_scope = "aegis-publish"
    name = "Aegis publish"
    help = help_text(
        """
        How `pants publish` pushes `model_package` images: by digest to the OCI registry of their
        `repository`, signed and attested the way cosign does it (a signing key from AEGIS_SIGNING_KEY_FILE or
        AEGIS_SIGNING_KEY, with AEGIS_SIGNING_KEY_PASSWORD), then tagged with their `version`, which is never
        moved once set. Registry credentials come from AEGIS_REGISTRY_USERNAME/AEGIS_REGISTRY_PASSWORD or the
        Docker config (`docker login`, DOCKER_CONFIG).
        """
    )

    resolve = StrOption(
        default="publish",
        help=help_text(
            """
            The Python resolve (installed whole) of the publisher: `cryptography`, `PyNaCl` and `model-signing`,
            pinned by hash.
            """
        ),
    )
    registry = StrOption(
        default=None,
        help=help_text(
            """
            The registry (`host[:port]`) for `repository` values that name none, e.g. `aegis/fraud-detector`
            (the default repository) publishes to `<registry>/aegis/fraud-detector`.
            """
        ),
    )
    allow_plain_http = BoolOption(
        default=False,
        help="Talk plain HTTP to registries not on loopback (loopback registries always may). Never for production.",
    )
