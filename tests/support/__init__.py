"""Harnesses shared by the test directories: a bridge under test per area (API, terminals,
webhooks), local HTTP servers and ZVT wiring. Importable as ``support.*`` (pytest's
``pythonpath`` includes ``tests/``). Generic doubles live in :mod:`tillbridge.testing`."""
