"""Lets ``pytest`` import ``ctxseg_deeplab`` from a source checkout that is not installed."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
