"""`python -m clipvil.cli ...` (what torchrun launches)."""

import sys

from clipvil.cli import main

sys.exit(main())
