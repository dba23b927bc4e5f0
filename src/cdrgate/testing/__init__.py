"""Helpers for exercising a real ``cdrgate serve``: the test suite and the bench scripts share
them, so they live in the package (bench/ must not import tests/, nor tests/ import bench/).

Nothing here imports pytest: failures are plain exceptions that carry the server's output.
"""
