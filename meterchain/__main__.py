"""``python -m meterchain``: the same as the ``meterchain`` console script."""

import sys

from meterchain.cli import main

sys.exit(main())
