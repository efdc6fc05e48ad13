import pytest

from aegis_plugin.core.oci.whiteout import Whiteout, WhiteoutError, is_whiteout, parse


def test_whiteouts() -> None:
    assert parse("passwd") is None and not is_whiteout("passwd")
    assert parse(".wh.passwd") == Whiteout("passwd")
    assert parse(".wh..wh..opq") == Whiteout(None)
    assert parse(".wh..wh.plnk") is None and is_whiteout(".wh..wh.plnk")  # AUFS metadata hides nothing
    assert parse(".wh..hidden") == Whiteout(".hidden")


@pytest.mark.parametrize("name", [".wh.", ".wh..", ".wh..."])
def test_a_whiteout_naming_no_entry_is_refused(name: str) -> None:
    with pytest.raises(WhiteoutError, match="names no entry"):
        parse(name)
