"""conftest.py -- tests/chaos: the harness modules and tests/integration's
tether_harness/tether_client on the import path."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for p in (HERE, HERE.parents[1] / "tests" / "integration"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))
