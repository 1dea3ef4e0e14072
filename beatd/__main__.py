"""``python -m beatd``: the same as the ``beatd`` command."""

from beatd.cli import main

main()
