import datetime
import json

import pytest

from aegis_plugin.core.guards import vex


def openvex(*statements) -> bytes:
    return json.dumps({"@context": "https://openvex.dev/ns/v0.2.0", "@id": "x", "author": "ml-platform",
                       "timestamp": "2026-01-01T00:00:00Z", "version": 1, "statements": list(statements)}).encode()


def test_openvex() -> None:
    accepted, problems = vex.load(openvex(
        {"vulnerability": {"name": "CVE-2024-3651"}, "products": [{"@id": "pkg:pypi/idna@3.6"}],
         "status": "not_affected", "justification": "vulnerable_code_not_in_execute_path", "expires": "2027-01-31"},
        {"vulnerability": {"name": "CVE-2023-32681"}, "products": [{"@id": "pkg:pypi/requests"}],
         "status": "not_affected"},
        {"vulnerability": {"name": "CVE-2020-14343"}, "products": [{"@id": "pkg:pypi/pyyaml"}], "status": "affected"},
    ), "vex.json")
    (acceptance,) = accepted
    assert acceptance.expires == datetime.date(2027, 1, 31) and acceptance.origin == "vex.json: statement 1"
    assert acceptance.covers(["PYSEC-2024-60", "CVE-2024-3651"], "pkg:pypi/idna@3.6")
    assert not acceptance.covers(["CVE-2024-3651"], "pkg:pypi/idna@3.7")  # another version
    assert not acceptance.covers(["CVE-2099-1"], "pkg:pypi/idna@3.6")  # another vulnerability
    assert problems == ["vex.json: statement 2 (CVE-2023-32681) accepts without a justification"]


def test_cyclonedx_vex() -> None:
    document = {"bomFormat": "CycloneDX", "specVersion": "1.6", "vulnerabilities": [
        {"id": "CVE-2024-3651", "analysis": {"state": "not_affected", "justification": "code_not_reachable"},
         "affects": [{"ref": "pkg:pypi/idna"}], "properties": [{"name": "aegis:expires", "value": "2026-02-01"}]},
        {"id": "CVE-2023-32681", "analysis": {"state": "not_affected", "justification": "code_not_reachable"}},
        {"id": "CVE-2020-14343", "analysis": {"state": "exploitable"}, "affects": [{"ref": "pkg:pypi/pyyaml"}]},
    ]}
    accepted, problems = vex.load(json.dumps(document).encode(), "cdx.json")
    (acceptance,) = accepted
    assert acceptance.expires == datetime.date(2026, 2, 1) and acceptance.covers(["CVE-2024-3651"], "pkg:pypi/idna@3.6")
    assert problems == ["cdx.json: vulnerability 2 (CVE-2023-32681) names no product"]
    with pytest.raises(vex.VexError, match="neither OpenVEX"):
        vex.load(b"{}", "x.json")
