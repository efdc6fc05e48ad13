"""`pants lint` runs the guards on real builds: the demo models pass clean (against this repository's pinned
database and the real PyPA advisory snapshot in ../shared/vulndb), a test model that pins known-vulnerable
releases is caught, accepted by VEX, and held to the severity gate, and each pitfall fails with its message
(`package` refuses them too)."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import tarfile

import pytest

from tests.e2e.clones import REPO_ROOT, Clone, make_clone
from tests.e2e.shared_data import require_shared

VULNERABLE = ["--aegis-runtime-resolves=['vulnerable']"]


def pypa_database(clone: Clone) -> str:
    """`//vulndb:pypa`, the real PyPA advisory snapshot pinned the way a user pins an OSV export. The snapshot
    is optional data beside the repository: without it the test is skipped here, and fails in CI."""
    if not (clone.root / "vulndb/BUILD").exists():
        snapshot = require_shared("vulndb/pypa-advisory-database", "the PyPA advisory snapshot", REPO_ROOT)
        (clone.root / "vulndb").mkdir()
        archive = clone.root / "vulndb/pypa.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(snapshot / "vulns", arcname="vulns")
        sha256 = hashlib.sha256(archive.read_bytes()).hexdigest()
        (clone.root / "vulndb/BUILD").write_text(f'osv_database(name="pypa", source="pypa.tar.gz", sha256="{sha256}")\n')
    return "--aegis-guards-database=//vulndb:pypa"


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Clone:
    clone = make_clone(tmp_path_factory.mktemp("lint"), "repo")
    # The test model that pins known-vulnerable releases, with its resolve.
    fixture, model = clone.root / "tests/e2e/fixtures/vulnerable", clone.root / "models/vulnerable"
    shutil.copytree(fixture, model)
    (model / "BUILD-fixture").rename(model / "BUILD")
    edit(clone, "pants.toml", 'scan = "3rdparty/python/scan.lock"\n',
         'scan = "3rdparty/python/scan.lock"\nvulnerable = "models/vulnerable/vulnerable.lock"\n')
    return clone


def lint(clone: Clone, *args: str, spec: str = "models/vulnerable::", ok: bool):
    result = clone.pants(*args, "lint", *spec.split(), check=False)
    assert (result.returncode == 0) == ok, result.stdout + result.stderr
    return result.stdout + result.stderr


def edit(clone: Clone, path: str, old: str, new: str) -> None:
    file = clone.root / path
    text = file.read_text()
    assert old in text
    file.write_text(text.replace(old, new))


def test_the_demo_models_pass_clean(clone: Clone) -> None:
    out = lint(clone, spec="models/fraud:: models/sentiment::", ok=True)
    for target in ("models/fraud:fraud", "models/sentiment:sentiment"):
        assert f"{target}: 39 packages, 7 advisories (newest 2026-11-26), 0 finding(s), 0 error(s)" in out
        report = clone.root / "dist/lint/aegis-guards" / target.replace("/", "_").replace(":", "_")
        assert json.loads((report / "guards.json").read_text())["findings"] == []
        assert json.loads((report / "guards.sarif").read_text())["runs"][0]["results"] == []
    # Against the real PyPA snapshot: current releases, no advisory applies.
    out = lint(clone, pypa_database(clone), spec="models/fraud::", ok=True)
    summary = re.search(r"models/fraud:fraud: 39 packages, (\d+) advisories \(newest 2024-\d\d-\d\d\), 0 finding", out)
    advisories = int(summary.group(1))
    assert advisories > 2600


def test_detection_and_the_severity_gate(clone: Clone) -> None:
    out = lint(clone, *VULNERABLE, ok=False)
    assert re.search(r"error +vulnerability +high +PYSEC-2021-108 +urllib3 1\.26\.4: PYSEC-2021-108 \(CVE-2021-33503\), "
                     r"severity high; fixed in 1\.26\.5", out), out
    assert re.search(r"warning +vulnerability +medium +PYSEC-2024-60 +idna 3\.6: PYSEC-2024-60 \(CVE-2024-3651\), "
                     r"severity medium; fixed in 3\.7", out), out
    assert "models/vulnerable:vulnerable: 23 packages, 7 advisories (newest 2026-11-26), 2 finding(s), 1 error(s)" in out
    sarif = json.loads((clone.root / "dist/lint/aegis-guards/guards.sarif").read_text())
    (error,) = [r for r in sarif["runs"][0]["results"] if r["level"] == "error"]
    assert error["ruleId"] == "vulnerability" and error["properties"]["advisory"] == "PYSEC-2021-108"
    assert error["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "models/vulnerable/vulnerable.lock"
    lint(clone, *VULNERABLE, "--aegis-guards-fail-at=critical", ok=True)  # high is below a critical gate
    # The real snapshot: more advisories apply; one rates no severity and counts as high (the default).
    out = lint(clone, *VULNERABLE, pypa_database(clone), ok=False)
    for line in (r"error +vulnerability +high +PYSEC-2024-60 +idna 3\.6: .*; fixed in 3\.7",
                 r"error +vulnerability +unknown +PYSEC-2021-108 +urllib3 1\.26\.4: .*, severity unknown \(counted as "
                 r"high\); fixed in 1\.26\.5",
                 r"error +vulnerability +high +PYSEC-2023-192 +urllib3 1\.26\.4: .*; fixed in 1\.26\.17, 2\.0\.6",
                 r"warning +vulnerability +medium +PYSEC-2023-212 +urllib3 1\.26\.4: .*; fixed in 1\.26\.18, 2\.0\.7",
                 r"models/vulnerable:vulnerable: 23 packages, \d{4} advisories \(newest 2024-\d\d-\d\d\), 4 finding\(s\), 3 error\(s\)"):
        assert re.search(line, out), (line, out)


def test_vex_accepts_a_justified_finding_until_it_expires(clone: Clone) -> None:
    edit(clone, "models/vulnerable/BUILD", '    framework="idna",\n', '    framework="idna",\n    vex=["vex.json"],\n')
    try:
        out = lint(clone, *VULNERABLE, ok=True)
        assert re.search(r"note +vulnerability +high +PYSEC-2021-108 .*; accepted by models/vulnerable/vex\.json: "
                         r"statement 1: vulnerable_code_not_in_execute_path", out), out
        edit(clone, "models/vulnerable/BUILD", 'vex=["vex.json"]', 'vex=["vex-expired.json"]')
        out = lint(clone, *VULNERABLE, ok=False)
        assert ("models/vulnerable/vex-expired.json: statement 1 accepting PYSEC-2021-108 for urllib3 1.26.4 "
                "expired on 2026-01-31") in out
    finally:
        edit(clone, "models/vulnerable/BUILD", '    vex=["vex-expired.json"],\n', "")


def package_fails(clone: Clone, *args: str, spec: str = "models/fraud::") -> str:
    result = clone.pants(*args, "package", spec, check=False)
    assert result.returncode != 0, result.stdout
    return result.stderr


def test_pitfalls_fail_package_and_lint(clone: Clone) -> None:
    denied = package_fails(clone, *VULNERABLE, "--aegis-guards-deny-python=+['urllib3']", spec="models/vulnerable::")
    assert ("models/vulnerable:vulnerable: the runtime image carries urllib3 1.26.4, which [aegis-guards].deny_python "
            "denies ('urllib3'): remove what pulls it into the handler's dependencies") in denied
    training = package_fails(clone, "--aegis-guards-training-resolves=['vulnerable']")
    assert ("models/fraud:fraud: the runtime image carries idna 3.20, which only the training resolve requires: the "
            "handler (or its dependencies) must not import training code") in training

    edit(clone, "models/fraud/BUILD", "size_budget=60,", "size_budget=40,")
    try:
        assert re.search(r"models/fraud:fraud: the image is 44\.\d MB compressed, over its size_budget of 40 MB "
                         r"\(largest layer: python distributions from runtime\.lock\)", package_fails(clone))
        out = lint(clone, spec="models/fraud::", ok=False)
        assert re.search(r"    layer debian packages from python3\.11-bookworm\.lock: 17\.\d MB", out), out
        assert re.search(r" +\d+\.\d MB  /app/site-packages/\S+", out), out  # the largest files
    finally:
        edit(clone, "models/fraud/BUILD", "size_budget=40,", "size_budget=60,")

    edit(clone, "models/fraud/BUILD", '    framework="numpy",\n', '    framework="numpy",\n    accelerator="cuda-12.4",\n')
    try:
        assert ("models/fraud:fraud: accelerator is `cuda-12.4`, but neither the wheels nor the base image carry a "
                "CUDA 12.4 runtime (no +cu build of numpy, no nvidia-cuda-runtime wheel, no libcudart package): it "
                "would run on the CPU") in package_fails(clone)
    finally:
        edit(clone, "models/fraud/BUILD", '    accelerator="cuda-12.4",\n', "")


def test_floating_references_and_the_model_card_stop_lint_too(clone: Clone) -> None:
    edit(clone, "models/vulnerable/BUILD", '    version="0.1.0",\n', '    version="0.1.0",\n    repository="ml/x:latest",\n')
    try:
        out = lint(clone, *VULNERABLE, ok=False)
        assert ("models/vulnerable:vulnerable: field `repository`: 'ml/x:latest' carries a tag; give the repository "
                "only: images are tagged with their `version`, never `latest`") in out
    finally:
        edit(clone, "models/vulnerable/BUILD", '    repository="ml/x:latest",\n', "")
    edit(clone, "models/vulnerable/model_card.md", "## Limitations\n", "## Notes\n")
    try:
        out = lint(clone, *VULNERABLE, ok=False)
        assert "models/vulnerable:vulnerable: field `model_card`" in out and "Limitations" in out, out
    finally:
        edit(clone, "models/vulnerable/model_card.md", "## Notes\n", "## Limitations\n")
    edit(clone, "3rdparty/vulndb/advisories.json", '"PYSEC-2024-60"', '"PYSEC-2024-60 "')
    try:
        out = lint(clone, spec="models/fraud::", ok=False)
        assert re.search(r"3rdparty/vulndb:osv: field `sha256`: 3rdparty/vulndb/advisories\.json has sha256 [0-9a-f]{64}, "
                         r"not [0-9a-f]{64}: if the database was updated on purpose, pin the new digest", out), out
    finally:
        edit(clone, "3rdparty/vulndb/advisories.json", '"PYSEC-2024-60 "', '"PYSEC-2024-60"')
