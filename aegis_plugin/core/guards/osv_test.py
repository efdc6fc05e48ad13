import io
import json
import tarfile

import pytest

from aegis_plugin.core.guards import osv, testutil


def test_ranges_follow_osv_semantics() -> None:
    assert osv.affected(testutil.IDNA, "PyPI", "idna", "3.6")
    assert osv.affected(testutil.IDNA, "PyPI", "IDNA", "0.1")
    assert not osv.affected(testutil.IDNA, "PyPI", "idna", "3.7")
    assert not osv.affected(testutil.IDNA, "PyPI", "idna", "0.0.9")  # before `introduced`
    assert osv.affected(testutil.PYYAML, "PyPI", "pyyaml", "5.3.1")  # name normalised (PyYAML)
    assert not osv.affected(testutil.PYYAML, "PyPI", "pyyaml", "5.4")
    assert osv.affected(testutil.OPENSSL, "Debian:12", "openssl", "3.0.11-1~deb12u1")
    assert not osv.affected(testutil.OPENSSL, "Debian:12", "openssl", "3.0.11-1~deb12u2")
    assert not osv.affected(testutil.OPENSSL, "Debian:11", "openssl", "3.0.11-1~deb12u1")  # other release
    last = {"id": "X", "affected": [{"package": {"ecosystem": "PyPI", "name": "p"}, "ranges": [
        {"type": "ECOSYSTEM", "events": [{"introduced": "1.0"}, {"last_affected": "1.4"}]}], "versions": ["0.5"]}]}
    assert osv.affected(last, "PyPI", "p", "1.4") and not osv.affected(last, "PyPI", "p", "1.4.1")
    assert osv.affected(last, "PyPI", "p", "0.5")  # listed explicitly
    two = {"id": "Y", "affected": [{"package": {"ecosystem": "PyPI", "name": "p"}, "ranges": [
        {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.2"}, {"introduced": "2.0"}, {"fixed": "2.3"}]}]}]}
    assert [v for v in ("1.1", "1.2", "1.9", "2.0", "2.2.9", "2.3") if osv.affected(two, "PyPI", "p", v)] == \
        ["1.1", "2.0", "2.2.9"]


def test_databases_load_from_directories_and_archives(tmp_path) -> None:
    testutil.write_database(tmp_path / "db")
    (tmp_path / "db" / "withdrawn.json").write_text(json.dumps({**testutil.NUMPY, "id": "W", "withdrawn": "2024-01-01"}))
    directory = osv.load(str(tmp_path / "db"))
    assert sorted(r["id"] for r in directory.advisories) == sorted(r["id"] for r in testutil.RECORDS)
    assert [r["id"] for r in directory.candidates("PyPI", "pyyaml")] == ["PYSEC-2021-142"]
    with tarfile.open(tmp_path / "db.tar.gz", "w:gz") as tar:
        for record in testutil.RECORDS:
            data = ("id: " + record["id"] + "\naffected: []\n").encode()
            info = tarfile.TarInfo(f"vulns/{record['id']}.yaml")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert len(osv.load(str(tmp_path / "db.tar.gz")).advisories) == len(testutil.RECORDS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(osv.DatabaseError, match="no OSV records"):
        osv.load(str(tmp_path / "empty"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.json").write_text("{}")
    with pytest.raises(osv.DatabaseError, match=r"x.json: not an OSV record \(no `id`\)"):
        osv.load(str(tmp_path / "bad"))
