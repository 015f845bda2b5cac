"""``python -m analyze.cli``: the ``biastransfer`` console script."""

import sys

from analyze.cli import main

sys.exit(main())
