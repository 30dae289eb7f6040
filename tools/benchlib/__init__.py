"""Pieces of the glance-convert benchmark (``tools/bench.py``)."""
