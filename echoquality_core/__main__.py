"""`python -m echoquality_core` runs the `echoquality` command."""
import sys

from echoquality_core.cli.main import main

sys.exit(main())
