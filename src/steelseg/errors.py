"""The one base class of "your input is wrong" errors, at the bottom of the package.

Every module's user-facing error subclasses ``SteelsegError`` (and, where it reads naturally,
``ValueError``); the CLI prints such an error as one line naming the file, row or option, and
lets anything else (a bug) show its traceback. This module imports nothing, so the lightest
command can catch every user mistake without importing torch.
"""


class SteelsegError(Exception):
    """A user mistake: a bad file, row, option or folder. The message says which, in one line."""


class OutputExistsError(SteelsegError, FileExistsError):
    """An output that would overwrite earlier work."""


class UsageError(SteelsegError):
    """Options that do not go together, or one missing: the message names them."""
