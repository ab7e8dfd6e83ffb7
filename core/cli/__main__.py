"""``python -m ctxseg.cli``: the command line."""

import sys

from ctxseg.cli import main

sys.exit(main())
