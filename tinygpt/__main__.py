"""``python -m tinygpt``: the ``tinygpt`` command (tinygpt.app.cli), for when the script is not
on PATH."""

import sys

from .app.cli import main

if __name__ == "__main__":
    sys.exit(main())
