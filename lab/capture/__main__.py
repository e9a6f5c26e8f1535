"""`python3 -m lab.capture --interface IFACE --output FILE [--interface IFACE --output FILE ...]`."""

import sys

from lab.capture.helper import main

sys.exit(main())
