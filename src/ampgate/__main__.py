"""``python -m ampgate``: the ``ampgate`` command (:func:`ampgate.cli.main.main`)."""

from __future__ import annotations

import sys

from ampgate.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
