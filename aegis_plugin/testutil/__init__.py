"""Test support shared by the tests of several resolves: local servers on 127.0.0.1, stopped by PID."""
