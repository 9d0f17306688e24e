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


# -- talking to Kaggle (re-exported by kaggletools.kaggle.credentials) ---------------------------------
class KaggleError(RuntimeError):
    """Anything that went wrong talking to Kaggle."""


class KaggleCredentialsError(KaggleError):
    """No usable credentials, or Kaggle rejected them (401)."""


class KaggleForbiddenError(KaggleError):
    """403: usually the competition's rules were not accepted."""


class KaggleNotFoundError(KaggleError):
    """404: unknown competition or file."""


class KaggleRateLimitError(KaggleError):
    """429: too many requests."""


class KaggleNetworkError(KaggleError):
    """Kaggle could not be reached (connection refused, DNS, timeout, cut download)."""
