from __future__ import annotations

import pytest

from aegis_plugin.util_rules.core_imports import closure

FILES = {
    "aegis_plugin/__init__.py": b"",
    "aegis_plugin/core/__init__.py": b"",
    "aegis_plugin/core/cli.py": b"import json\nfrom aegis_plugin.core.oci import layer\n"
                                b"def f():\n    from .debian import rootfs\n",
    "aegis_plugin/core/oci/__init__.py": b"from aegis_plugin.core.oci.toc import TOC\n",
    "aegis_plugin/core/oci/layer.py": b"from . import toc\n",
    "aegis_plugin/core/oci/toc.py": b"import hashlib\nTOC = 1\n",
    "aegis_plugin/core/debian/__init__.py": b"",
    "aegis_plugin/core/debian/rootfs.py": b"from ..notices import lines\n",
    "aegis_plugin/core/notices.py": b"",
    "aegis_plugin/core/publish/__init__.py": b"",
    "aegis_plugin/core/publish/cli.py": b"import aegis_plugin.core.oci.layer\n",
}


def test_closure_follows_absolute_relative_and_function_level_imports() -> None:
    assert closure("aegis_plugin.core.cli", FILES) == [
        "aegis_plugin/__init__.py", "aegis_plugin/core/__init__.py", "aegis_plugin/core/cli.py",
        "aegis_plugin/core/debian/__init__.py", "aegis_plugin/core/debian/rootfs.py",
        "aegis_plugin/core/notices.py", "aegis_plugin/core/oci/__init__.py", "aegis_plugin/core/oci/layer.py",
        "aegis_plugin/core/oci/toc.py",
    ]
    assert "aegis_plugin/core/cli.py" not in closure("aegis_plugin.core.publish.cli", FILES)
    with pytest.raises(ValueError, match="no core module aegis_plugin.core.nope"):
        closure("aegis_plugin.core.nope", FILES)
