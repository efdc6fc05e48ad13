"""Options of `pants publish` for model images."""
from __future__ import annotations

from enum import Enum

from pants.option.option_types import BoolOption, EnumOption, StrOption
from pants.option.subsystem import Subsystem
from pants.util.strutil import help_text


class SigningMode(Enum):
    key = "key"
    keyless = "keyless"


class PublishSubsystem(Subsystem):
    options_scope = "aegis-publish"
    name = "Aegis publish"
    help = help_text(
        """
        How `pants publish` pushes `model_package` images: by digest to the OCI registry of their
        `repository`, signed and attested the way cosign does it (with a key, or keyless through Sigstore:
        see `signing`), then tagged with their `version`, which is never moved once set.

        Registry credentials come from AEGIS_REGISTRY_USERNAME/AEGIS_REGISTRY_PASSWORD, sent only to the
        registry that AEGIS_REGISTRY_HOST names (host[:port], e.g. `ghcr.io`), or from the Docker config
        (`docker login`, DOCKER_CONFIG). They go over TLS only (plain HTTP to loopback alone), and to a token
        service on another host only if AEGIS_REGISTRY_TOKEN_HOSTS lists it.
        """
    )

    resolve = StrOption(
        default="publish",
        help=help_text(
            """
            The Python resolve (installed whole) of the publisher: `cryptography`, `PyNaCl`, `model-signing` and
            `sigstore` (keyless), pinned by hash.
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
    signing = EnumOption(
        default=SigningMode.key,
        help=help_text(
            """
            `key`: sign with the key in AEGIS_SIGNING_KEY_FILE (a path) or AEGIS_SIGNING_KEY (the PEM), cosign's
            encrypted format or PEM, its password in AEGIS_SIGNING_KEY_PASSWORD. `keyless`: sign as the CI's
            OIDC identity through Sigstore (a Fulcio certificate, every signature in Rekor); the token comes
            from SIGSTORE_ID_TOKEN or the CI's ambient credentials (GitHub Actions: `permissions: id-token:
            write`). Either way `[aegis].signer_identity` must be that identity (keyless: the certificate's
            identity, e.g. `https://github.com/ORG/REPO/.github/workflows/release.yml@refs/heads/main`).
            """
        ),
    )
    sigstore_staging = BoolOption(
        default=False,
        help="Keyless signing against Sigstore's staging instance instead of production (for trying it out).",
    )
    allow_plain_http = BoolOption(
        default=False,
        help="Talk plain HTTP to registries not on loopback (loopback registries always may). Never for production.",
    )
