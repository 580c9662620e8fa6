"""Command-line tools that build fixtures, replicas and reports: the pinned registry files (assets), real-shaped
fixture data (realshapes), tiny replicas of real checkpoints (replicas, families/, replica_specs/), the
conformance matrix (conformance) and benchmark folders from a CSV (typography). They may import the library
(`core/`); the library never imports them, and no stage imports them (tests/test_layers.py holds both rules).
"""
