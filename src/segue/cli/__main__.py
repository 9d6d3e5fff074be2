"""``python -m segue.cli``: the ``segue`` console script without installing it."""

import sys

from segue.cli import main

sys.exit(main())
