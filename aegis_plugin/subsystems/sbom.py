"""Options of the SBOMs (CycloneDX 1.7 and SPDX 2.3) that `pants package` writes for each model image."""
from __future__ import annotations

import re
from typing import Dict, Optional

from pants.option.option_types import StrListOption, StrOption
from pants.option.subsystem import Subsystem
from pants.util.strutil import help_text

# Files the Debian base writes itself (no package ships them): users, name service, OS identity, CA bundle.
DEFAULT_ALLOW = (
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/os-release",
    "/etc/ssl/certs/ca-certificates.crt",
)


class SbomSubsystem(Subsystem):
    options_scope = "aegis-sbom"
    name = "Aegis SBOM"
    help = help_text(
        """
        The software bill of materials of each `model_package` image: `sbom.cdx.json` (CycloneDX 1.7, with
        the model as a `machine-learning-model` component, its model card and lineage), `sbom.spdx.json` (SPDX
        2.3, also shipped in the image as `/app/sbom.spdx.json`) and `sbom.spdx3.json` (SPDX 3.0.1), written
        next to the image in `dist/`.
        `package` fails when a file of the image belongs to no component of the SBOM, unless it matches
        `allow`; the counts are in `sbom-completeness.json`.
        """
    )

    resolve = StrOption(
        default="sbom",
        help=help_text(
            """
            The Python resolve whose lock (installed whole) holds the SBOM writer's third-party
            requirements: `cyclonedx-python-lib` (with its JSON-schema validator) and `spdx-tools`, pinned
            by hash.
            """
        ),
    )
    allow = StrListOption(
        default=list(DEFAULT_ALLOW),
        help=help_text(
            """
            Glob patterns (`fnmatch`, absolute paths in the image; `*` also matches `/`) of files the
            completeness check accepts without a component. The defaults are the files the Debian base
            generates itself rather than installing from a package. Use `+[...]` to add to them.
            """
        ),
    )
    organization = StrOption(
        default="",
        help=help_text(
            """
            The organisation that builds the images, named beside the tool as the SBOMs' creator (SPDX
            `creationInfo.creators`; CycloneDX `metadata.manufacturer`, `supplier` and `authors`) and as the
            image's supplier. Empty: the tool alone is named, and the model card's `owner` supplies the image.
            """
        ),
    )
    organization_email = StrOption(
        default="",
        help="A contact address of `organization` (e.g. the platform team's list); optional.",
    )
    organization_url = StrOption(
        default="",
        help="The web address of `organization` (https://…); optional.",
    )

    def creator(self) -> Dict[str, Optional[str]]:
        """The inventory's ``image.creator``; ValueError names the option when a value is malformed."""
        name, email, url = self.organization.strip(), self.organization_email.strip(), self.organization_url.strip()
        if "\n" in name or any(c in name for c in "<>()"):
            raise ValueError(
                f"option `[{self.options_scope}].organization`: expected one line without <>(), got {name!r}"
            )
        if email and not _EMAIL.match(email):
            raise ValueError(f"option `[{self.options_scope}].organization_email`: expected an address, got {email!r}")
        if url and not _URL.match(url):
            raise ValueError(
                f"option `[{self.options_scope}].organization_url`: expected an http(s):// URL, got {url!r}"
            )
        return {"name": name, "email": email or None, "url": url or None}


_EMAIL = re.compile(r"^[^<>()\s@]+@[^<>()\s@]+\.[^<>()\s@]+$")
_URL = re.compile(r"^https?://[^\s<>()]+$")
