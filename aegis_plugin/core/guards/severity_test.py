from aegis_plugin.core.guards import severity, testutil


def test_cvss_vectors_and_qualitative_ratings() -> None:
    assert severity.of(testutil.PYYAML) == "critical"  # 9.8
    assert severity.of(testutil.OPENSSL) == "high"  # 7.5
    assert severity.of(testutil.REQUESTS) == "medium"  # 6.1
    assert severity.of(testutil.IDNA) == "medium"  # 6.2
    assert severity.of(testutil.NUMPY) is None
    assert severity.of({"database_specific": {"severity": "MODERATE"}}) == "medium"
    assert severity.of({}, {"ecosystem_specific": {"severity": "low"}}) == "low"
    assert severity.of({"severity": [{"type": "CVSS_V3", "score": "garbage"}]}) is None
    assert severity.of({"severity": [{"type": "CVSS_V4", "score":
                                      "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"}]}) == "critical"
