from aegis_plugin.core.debian.copyright import copyright_notices, declared_licenses

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


def test_dep5_copyright_fields_in_file_order() -> None:
    assert copyright_notices(DEP5) == ("1995-2013 Jean-loup Gailly and Mark Adler", "2000 Someone")


def test_dep5_multi_line_copyright_field() -> None:
    text = "Format: https://x/1.0/\n\nFiles: *\nCopyright:\n  Copyright (c) 1996  Red Hat, Inc.\n .\n" \
           "  Copyright (C) 1996 Anthony Green\nLicense: MIT\n"
    assert copyright_notices(text) == ("Copyright (c) 1996 Red Hat, Inc.", "Copyright (C) 1996 Anthony Green")


def test_free_form_notice_lines_only() -> None:
    text = "COPYRIGHT STATEMENTS AND LICENSING TERMS\n    Copyright (C) 1991-2015 Free Software Foundation, Inc.\n" \
           "Copyright © 2009 Someone\ncopyright 2001 Other\nCopyright (C) 1991-2015 Free Software Foundation, Inc.\n"
    assert copyright_notices(text) == (
        "Copyright (C) 1991-2015 Free Software Foundation, Inc.", "Copyright © 2009 Someone", "copyright 2001 Other",
    )
    assert copyright_notices(FREE_FORM) == ()
