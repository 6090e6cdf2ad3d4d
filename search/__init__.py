"""Latency-aware DARTS search (installed as ``latkit.search``)."""
