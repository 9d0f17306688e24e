"""`python -m kaggletools ...`: the command line."""
import sys

from kaggletools.cli import main

sys.exit(main())
