"""Latency datasets and the code that reads, writes and merges them (installed as ``latkit.datasets``)."""
