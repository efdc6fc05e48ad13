from __future__ import annotations

from typing import Optional

import pytest

from aegis_plugin.core.sbom import licenses
from aegis_plugin.core.sbom.licenses import LicenseRefs


@pytest.mark.parametrize(
    "dep5, spdx",
    [
        ("GPL-2", "GPL-2.0-only"),
        ("GPL-2+", "GPL-2.0-or-later"),
        ("GPL-3+", "GPL-3.0-or-later"),
        ("LGPL-2.1", "LGPL-2.1-only"),
        ("LGPL-2.1+", "LGPL-2.1-or-later"),
        ("AGPL-3+", "AGPL-3.0-or-later"),
        ("GFDL-1.2+", "GFDL-1.2-or-later"),
        ("Expat", "MIT"),
        ("BSD-3-clause", "BSD-3-Clause"),
        ("BSD-2-clause", "BSD-2-Clause"),
        ("Zlib", "Zlib"),
        ("CC0", "CC0-1.0"),
        ("Apache-2.0", "Apache-2.0"),
        ("MPL-2.0", "MPL-2.0"),
        ("GPL-3+ with GCC-3.1 exception", "GPL-3.0-or-later WITH GCC-exception-3.1"),
        ("public-domain", None),
        ("Artistic", None),  # which Artistic license is not obvious
        ("other", None),
        ("MPL-2.0+", None),
        ("GPL-2+ with OpenSSL exception", None),
    ],
)
def test_dep5_atom(dep5: str, spdx: Optional[str]) -> None:
    assert licenses.dep5_atom(dep5) == spdx


def test_dep5_compound_entries() -> None:
    assert licenses.dep5_entry("GPL-2+ or Artistic-2.0") == "GPL-2.0-or-later OR Artistic-2.0"
    assert licenses.dep5_entry("GPL-2+ or public-domain") is None
    assert licenses.dep5_entry("GPL-2+, and BSD-3-clause") is None  # DEP-5 comma precedence: not guessed


def test_debian_expression_ands_entries_and_defines_refs() -> None:
    refs = LicenseRefs()
    expression = licenses.debian_expression(["LGPL-2.1+", "GPL-2+ or Artistic", "public-domain", "GPL-2+"], refs)
    assert expression == (
        "GPL-2.0-or-later AND (GPL-2.0-or-later OR LicenseRef-debian-Artistic) AND LGPL-2.1-or-later"
        " AND LicenseRef-debian-public-domain"
    )
    assert [e.license_id for e in refs.extracted()] == ["LicenseRef-debian-Artistic", "LicenseRef-debian-public-domain"]
    assert licenses.debian_expression([], refs) is None
    # A free-form copyright file that names no license declares the terms it states.
    ref = licenses.debian_expression([], refs, "libcrypt1", "/usr/share/doc/libcrypt1/copyright")
    assert ref == "LicenseRef-debian-libcrypt1-copyright"
    assert "/usr/share/doc/libcrypt1/copyright" in next(e for e in refs.extracted() if e.license_id == ref).text
    assert licenses.debian_expression(["GPL-2+ or Artistic-2.0"], refs) == "GPL-2.0-or-later OR Artistic-2.0"


def test_declared_expression() -> None:
    refs = LicenseRefs()
    assert licenses.declared_expression("mit or apache-2.0", "pypi", refs) == "MIT OR Apache-2.0"
    assert licenses.declared_expression("GPL-2.0+", "pypi", refs) == "GPL-2.0-or-later"
    assert licenses.declared_expression(None, "pypi", refs) is None
    assert licenses.declared_expression("BSD License", "pypi", refs) == "LicenseRef-pypi-BSD-License"
    # A license's full text (some distributions put it in License:) gets a short, unique id.
    text = "Copyright (c) 2005 Someone\n\nRedistribution and use in source and binary forms are permitted."
    ref = licenses.declared_expression(text, "pypi", refs)
    assert ref is not None and ref.startswith("LicenseRef-pypi-Copyright-c-2005-Someone-") and len(ref) < 80
    assert next(e for e in refs.extracted() if e.license_id == ref).text == text
    # LicenseRefs are this package's to define, never taken from input.
    assert licenses.declared_expression("LicenseRef-foo", "pypi", refs) == "LicenseRef-pypi-LicenseRef-foo"


def test_license_ref_collisions_get_distinct_ids() -> None:
    refs = LicenseRefs()
    first = refs.ref("pypi", "BSD License", "BSD License")
    second = refs.ref("pypi", "BSD  License", "BSD  License")
    assert first == "LicenseRef-pypi-BSD-License"
    assert second.startswith("LicenseRef-pypi-BSD-License-") and second != first
    assert refs.ref("pypi", "BSD License", "BSD License") == first


def test_conjunction_of_an_aggregate() -> None:
    assert licenses.conjunction(["MIT", "GPL-2.0-or-later AND (MIT OR Apache-2.0)", "LicenseRef-debian-x AND MIT"]) == (
        "(MIT OR Apache-2.0) AND GPL-2.0-or-later AND LicenseRef-debian-x AND MIT")
    assert licenses.conjunction(["GPL-2.0-or-later WITH GCC-exception-3.1", "MIT"]) == (
        "GPL-2.0-or-later WITH GCC-exception-3.1 AND MIT")
    assert licenses.conjunction(["MIT", None]) is None  # one part unknown: the whole is
    assert licenses.conjunction([]) is None
