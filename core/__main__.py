"""``python -m ctxseg``: the command line, as torchrun starts it
(``torchrun --nproc-per-node N -m ctxseg train SPEC``)."""

import sys

from ctxseg.cli import main

sys.exit(main())
