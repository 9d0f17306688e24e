"""The command line (`kaggletools <verb>`), generated from the option dataclasses, thin over kaggletools.api."""
from kaggletools.cli.app import main

__all__ = ["main"]
