from aegis_plugin.core.debian.copyright import declared_licenses

DEP5 = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: zlib

Files: *
Copyright: 1995-2013 Jean-loup Gailly and Mark Adler
License: Zlib

Files: debian/*
Copyright: 2000 Someone
License: GPL-2+ or  Artistic
 This paragraph's text mentions /usr/share/common-licenses/GPL-3, which is not a declaration here.

License: Zlib
 This software is provided 'as-is', without any express or implied warranty.
"""

FREE_FORM = """\
This is the Debian prepackaged version of the GNU C Library.

The GNU C Library is free software; see /usr/share/common-licenses/LGPL-2.1.
Some utilities are under the GPL; on Debian systems, the complete text of the GNU General
Public License can be found in `/usr/share/common-licenses/GPL-2'. See also /usr/share/common-licenses/GPL.
"""


def test_dep5_license_fields() -> None:
    assert declared_licenses(DEP5) == ("GPL-2+ or Artistic", "Zlib")


def test_free_form_references_to_common_licenses() -> None:
    assert declared_licenses(FREE_FORM) == ("GPL", "GPL-2", "LGPL-2.1")


def test_nothing_declared() -> None:
    assert declared_licenses("Copyright 2001 Someone.\nAll rights reserved.\n") == ()
    assert declared_licenses("") == ()
