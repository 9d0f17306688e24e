"""`python -m kaggletools.cli ...` (and `torchrun ... -m kaggletools.cli ...`): the command line."""
import sys

from kaggletools.cli.app import main

sys.exit(main())
