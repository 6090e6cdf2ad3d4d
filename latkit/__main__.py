"""``python -m latkit`` is the ``latkit`` command."""
from latkit.cli import run

run()
