import json

from aegis_plugin.core.guards import cli, testutil


def _inputs(tmp_path, python, size_budget_mb=None):
    (tmp_path / "sbom.json").write_bytes(testutil.sbom(python=python))
    (tmp_path / "image.json").write_text(json.dumps({"layers": [{"description": "python", "size": 1000,
                                                                 "digest": "sha256:" + "0" * 64}]}))
    (tmp_path / "facts.json").write_text(json.dumps({
        "target": "models/x:x", "build_file": "models/x/BUILD", "python_lock": "runtime.lock",
        "debian_lock": "debian.lock", "size_budget_mb": size_budget_mb}))
    return ["--sbom", str(tmp_path / "sbom.json"), "--image", str(tmp_path / "image.json"),
            "--facts", str(tmp_path / "facts.json"), "--out", str(tmp_path / "out")]


def test_reports_and_exit_status(tmp_path, capsys) -> None:
    database = str(testutil.write_database(tmp_path / "db"))
    args = _inputs(tmp_path, [("PyYAML", "5.3.1"), ("idna", "3.6")])
    assert cli.main([*args, "--vulndb", database, "--today", "2026-11-26"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["LEVEL", "RULE", "SEVERITY", "SUBJECT", "FINDING"]
    assert "error    vulnerability  critical  PYSEC-2021-142  PyYAML 5.3.1: PYSEC-2021-142" in out
    assert out.rstrip().endswith("models/x:x: 2 packages, 7 advisories (newest 2026-11-26), 2 finding(s), 1 error(s)")
    report = json.loads((tmp_path / "out" / "guards.json").read_text())
    assert report["summary"]["errors"] == 1 and report["summary"]["scanned_as_of"] == "2026-11-26"
    sarif = json.loads((tmp_path / "out" / "guards.sarif").read_text())
    results = sarif["runs"][0]["results"]
    assert sarif["version"] == "2.1.0" and {r["level"] for r in results} == {"error", "warning"}
    assert results[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "runtime.lock"

    assert cli.main([*args, "--vulndb", database, "--fail-at", "critical", "--unknown-severity", "low",
                     "--today", "2026-11-26"]) == 1  # pyyaml is critical
    capsys.readouterr()
    assert cli.main(_inputs(tmp_path, [("numpy", "2.4.6")]) + ["--vulndb", database]) == 0
    assert "no findings" in capsys.readouterr().out


def test_the_size_budget_prints_layers_and_bad_input_is_one_line(tmp_path, capsys) -> None:
    assert cli.main(_inputs(tmp_path, [], size_budget_mb=0.0005)) == 1
    out = capsys.readouterr().out
    assert "over its size_budget of 0.0005 MB" in out and "    layer python: 0.0 MB" in out
    assert cli.main([*_inputs(tmp_path, []), "--vulndb", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.startswith("aegis: ")
