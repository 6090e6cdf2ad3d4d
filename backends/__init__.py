"""Backend adapters (installed as ``latkit.backends``): one per inference runtime, one measurement protocol."""
