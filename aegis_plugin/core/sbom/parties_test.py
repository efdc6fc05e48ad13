from __future__ import annotations

import pytest

from aegis_plugin.core.sbom.parties import Party, first, parse


@pytest.mark.parametrize(
    "entry, party, actor",
    [
        ("GNU Libc Maintainers <debian-glibc@lists.debian.org>",
         Party("GNU Libc Maintainers", "debian-glibc@lists.debian.org"),
         "Organization: GNU Libc Maintainers (debian-glibc@lists.debian.org)"),
        ("Matthias Klose <doko@debian.org>", Party("Matthias Klose", "doko@debian.org"),
         "Person: Matthias Klose (doko@debian.org)"),
        ("Hugging Face, Inc. <hf@example.org>", Party("Hugging Face, Inc.", "hf@example.org"),
         "Organization: Hugging Face, Inc. (hf@example.org)"),
        ("njs@example.org", Party("njs@example.org", "njs@example.org"), "Person: njs@example.org (njs@example.org)"),
        ("Aegis maintainers", Party("Aegis maintainers"), "Organization: Aegis maintainers"),
        ("Aegis maintainers <https://example.org/aegis>", Party("Aegis maintainers", url="https://example.org/aegis"),
         "Organization: Aegis maintainers"),
        ("Someone (the author)", Party("Someone (the author)"), "Person: Someone [the author]"),
        ("Laszlo Boszormenyi (GCS) <gcs@example.org>", Party("Laszlo Boszormenyi (GCS)", "gcs@example.org"),
         "Person: Laszlo Boszormenyi (GCS) (gcs@example.org)"),
    ],
)
def test_entries_as_spdx_actors(entry: str, party: Party, actor: str) -> None:
    assert parse(entry) == party
    assert party.spdx_actor() == actor


def test_a_known_organisation_needs_no_telling_word() -> None:
    assert Party("Acme", "ml@acme.example", organization=True).spdx_actor() == "Organization: Acme (ml@acme.example)"


def test_first_entry_of_the_first_non_empty_group() -> None:
    assert first((), ("B <b@x.example>", "C")) == Party("B", "b@x.example")
    assert first((), ()) is None
