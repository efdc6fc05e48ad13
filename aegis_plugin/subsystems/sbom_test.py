from __future__ import annotations

import pytest
from pants.testutil.option_util import create_subsystem

from aegis_plugin.subsystems.sbom import SbomSubsystem


def _sbom(**options: str) -> SbomSubsystem:
    values = {"organization": "", "organization_email": "", "organization_url": "", **options}
    return create_subsystem(SbomSubsystem, **values)


def test_creator_from_the_organisation_options() -> None:
    sbom = _sbom(organization=" ML Platform ", organization_email="ml@example.org",
                 organization_url="https://example.org/ml")
    assert sbom.creator() == {"name": "ML Platform", "email": "ml@example.org", "url": "https://example.org/ml"}
    assert _sbom(organization="ML Platform").creator() == {"name": "ML Platform", "email": None, "url": None}


@pytest.mark.parametrize(
    "options, message",
    [
        ({"organization": "ML <Platform>"}, "option `[aegis-sbom].organization`: expected one line without <>()"),
        ({"organization": "ML", "organization_email": "not an address"},
         "option `[aegis-sbom].organization_email`: expected an address, got 'not an address'"),
        ({"organization": "ML", "organization_url": "ftp://example.org"},
         "option `[aegis-sbom].organization_url`: expected an http(s):// URL, got 'ftp://example.org'"),
    ],
)
def test_malformed_organisation_options_name_the_option(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        _sbom(**options).creator()
