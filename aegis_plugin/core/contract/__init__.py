"""The contract test of a built image: unpack its OCI layout, run it in a sandbox, and probe it.

`unpack` turns an OCI image layout into a root filesystem, `sandbox` runs the image's entrypoint in it with
bwrap (loopback-only network), `checks` probes the running server, and `cli` ties them together:

    python -m aegis_plugin.core.contract.cli --layout DIR --examples FILE --report OUT.json [--ref NAME]

Plain Python with no Pants imports; third-party dependencies (tritonclient[http], numpy) come from
3rdparty/python/contract-test.lock.
"""
