import datetime
import json

from aegis_plugin.core.guards import inventory, osv, testutil, vex, vulns

TODAY = datetime.date(2026, 11, 26)
WHERE = vulns.Locations("3rdparty/python/runtime.lock", "3rdparty/debian/python3.11-bookworm.lock", "models/x/BUILD")
IMAGE = inventory.from_cyclonedx(testutil.sbom(
    python=[("idna", "3.6"), ("requests", "2.31.0"), ("PyYAML", "5.3.1"), ("numpy", "1.21.0")],
    debian=[("libssl3", "3.0.11-1~deb12u1", "openssl"), ("libc6", "2.36-9+deb12u4", "glibc")]))


def _scan(tmp_path, policy=vulns.Policy(), acceptances=(), problems=()):
    database = osv.load(str(testutil.write_database(tmp_path / "db")))
    return {f.advisory or f.message: f for f in vulns.scan(IMAGE, database, acceptances, problems, policy, TODAY, WHERE)}


def test_detection_and_the_severity_gate(tmp_path) -> None:
    found = _scan(tmp_path)
    assert sorted(found) == ["DSA-5532-1", "PYSEC-2021-142", "PYSEC-2021-856", "PYSEC-2024-60"]  # requests 2.31.0 is fixed
    assert found["PYSEC-2021-142"].level == "error" and found["PYSEC-2021-142"].severity == "critical"
    assert found["PYSEC-2021-142"].message == (
        "PyYAML 5.3.1: PYSEC-2021-142 (CVE-2020-14343), severity critical; fixed in 5.4")
    assert found["DSA-5532-1"].level == "error"  # found through libssl3's source package, by dpkg order
    assert found["DSA-5532-1"].location == WHERE.debian_lock
    assert found["PYSEC-2024-60"].level == "warning"  # medium, below the default gate (high)
    assert found["PYSEC-2021-856"].level == "error"  # no severity: counted as high by default
    assert "severity unknown (counted as high)" in found["PYSEC-2021-856"].message
    lenient = _scan(tmp_path, vulns.Policy(fail_at="critical", unknown="medium"))
    assert [k for k, f in lenient.items() if f.level == "error"] == ["PYSEC-2021-142"]
    strict = _scan(tmp_path, vulns.Policy(fail_at="medium"))
    assert all(f.level == "error" for f in strict.values())


def test_vex_accepts_only_what_it_justifies_until_it_expires(tmp_path) -> None:
    document = json.dumps({"@context": "https://openvex.dev/ns/v0.2.0", "statements": [
        {"vulnerability": {"name": "CVE-2020-14343"}, "products": [{"@id": "pkg:pypi/pyyaml@5.3.1"}],
         "status": "not_affected", "justification": "vulnerable_code_not_in_execute_path"},
        {"vulnerability": {"name": "CVE-2023-5363"}, "products": [{"@id": "pkg:deb/debian/libssl3"}],
         "status": "not_affected", "justification": "vulnerable_code_not_present", "expires": "2026-11-25"},
    ]}).encode()
    accepted, problems = vex.load(document, "models/x/vex.json")
    found = _scan(tmp_path, acceptances=accepted, problems=problems)
    assert found["PYSEC-2021-142"].level == "note"
    assert found["PYSEC-2021-142"].message.endswith(
        "accepted by models/x/vex.json: statement 1: vulnerable_code_not_in_execute_path")
    assert found["DSA-5532-1"].level == "error"  # its acceptance expired yesterday
    expired = [f for f in found.values() if f.rule == "vex"]
    assert [f.message for f in expired] == [
        "models/x/vex.json: statement 2 accepting DSA-5532-1 for libssl3 3.0.11-1~deb12u1 expired on 2026-11-25"]
    unjustified = _scan(tmp_path, problems=["vex.json: statement 1 (CVE-1) accepts without a justification"])
    assert unjustified["vex.json: statement 1 (CVE-1) accepts without a justification"].level == "error"
