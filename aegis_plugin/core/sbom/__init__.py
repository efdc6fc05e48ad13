"""SBOMs of a model image: CycloneDX 1.7 (ML-BOM) and SPDX 2.3 JSON, built from one inventory.

The package is a pure function from an inventory (``inventory.py``: what is in the image, as JSON) to two
byte-reproducible documents:

- ``cyclonedx.build_cyclonedx(inv) -> bytes`` and ``cyclonedx.validate_cyclonedx(data) -> list[str]``
- ``spdx.build_spdx(inv) -> bytes`` and ``spdx.validate_spdx(path) -> list[str]``

``cli.py`` is the process entry point the Pants rule runs (``python -m aegis_plugin.core.sbom.cli``).
No Pants imports here; the third-party libraries come from the ``sbom`` resolve (3rdparty/python/sbom.lock).
"""
