"""`python -m echoquality_core` runs the `echoquality` command."""
from echoquality_core.cli.main import run

run()
