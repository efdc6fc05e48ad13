"""Repository-wide Aegis options (`[aegis]` in pants.toml)."""
from __future__ import annotations

from pants.option.option_types import BoolOption, DictOption, StrListOption, StrOption
from pants.option.subsystem import Subsystem
from pants.util.strutil import help_text


class AegisSubsystem(Subsystem):
    options_scope = "aegis"
    help = "Options for packaging models with Aegis (`model_package` targets)."

    runtime_resolves = StrListOption(
        default=["runtime"],
        help=help_text(
            """
            The Python resolves whose locked distributions may go into images (each handler picks one with
            its `resolve` field). A handler in any other resolve (e.g. the training one) is refused, so
            training-only dependencies never ship.
            """
        ),
    )
    core_resolve = StrOption(
        default="core",
        help=help_text(
            """
            The Python resolve whose lock (installed whole) holds what Aegis' build steps need beyond the
            standard library: `zstandard`, which writes the layers of a `layer_compression="zstd"` image. The
            lock pins it by hash, and with it the libzstd it bundles, so those layers are the same bytes on every
            machine.
            """
        ),
    )
    debian_mirrors = DictOption[str](
        help=help_text(
            """
            Debian archive roots by suite, e.g. `{"bookworm": "https://snapshot.example/archive/debian/2025..."}`,
            to fetch the packages of `debian_base` locks from. Suites not listed use the first matching
            archive in this machine's apt sources. Every package is verified against the lock's sha256,
            so the mirror never changes the image.
            """
        ),
    )
    signer_identity = StrOption(
        default="unsigned",
        help=help_text(
            """
            Who signs the images: recorded as `signed_by` in each image's `/app/manifest.yaml`. Set it to
            the key's identity or the CI's keyless OIDC identity; it must match the signature's signer.
            """
        ),
    )
    source_url = StrOption(
        default="",
        help=help_text(
            """
            The repository URL recorded as the `org.opencontainers.image.source` annotation. Set it in
            pants.toml rather than reading git remotes, which differ between clones.
            """
        ),
    )
    model_artifact = BoolOption(
        default=True,
        help=help_text(
            """
            Also write a ModelPack model artifact (CNCF model-spec v0.0.7) into each image's OCI layout,
            tagged `<version>_modelpack`, for platforms that mount a model instead of baking it into an image
            (Kubernetes `image` volumes, KServe `oci+native://`, modctl, KitOps). Its layers are the image's
            own model layers (the same blobs), so it adds only a small config and manifest; turn it off to
            write the image alone.
            """
        ),
    )
    docker_archive = BoolOption(
        default=False,
        help=help_text(
            """
            Also write `image.tar` next to each image's OCI layout (`oci/`): one file that `docker load`,
            `podman load` and `skopeo copy docker-archive:…` read. It is a second full copy of every byte
            (gigabytes with large weights), so it is off by default: `skopeo copy oci:DIR:TAG …`, `podman
            load -i DIR` and `pants publish` read the layout directly.
            """
        ),
    )
