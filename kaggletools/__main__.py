"""`python -m kaggletools ...`: the command line."""
import sys

from kaggletools.cli.app import main

sys.exit(main())
