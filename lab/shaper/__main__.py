"""`python3 -m lab.shaper run|set|probe`."""

import sys

from lab.shaper.cli import main

sys.exit(main())
