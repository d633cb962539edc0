"""``python -m churnlab``: the command line."""

from churnlab.cli import main

main()
