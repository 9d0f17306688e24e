"""The errors every module may raise; none of them imports anything else of ours.

Each message names the file or value at fault and the fix; the command line prints it as one
line and exits non-zero (a traceback only with --debug).
"""


class CompetitionError(ValueError):
    """Bad data, a bad option or an unknown competition."""


class SubmissionError(ValueError):
    """A submission that Kaggle would reject or misread."""


class RunError(RuntimeError):
    """A run folder that cannot be used: unfinished, failed, or from another version."""


class Interrupted(BaseException):
    """The process was asked to stop (SIGINT or SIGTERM); `signal` says which."""

    def __init__(self, signal_number: int, name: str):
        super().__init__(f"interrupted by {name}")
        self.signal = signal_number
        self.name = name

    @property
    def exit_code(self) -> int:
        return 128 + self.signal


class OptionError(CompetitionError):
    """A recipe or run option with a value that cannot work."""
