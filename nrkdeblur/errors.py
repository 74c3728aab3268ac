"""The errors a user can cause, and so can fix: a bad file, a bad setting, a missing extra.

Every one of them is shown to the user as one line (cli/common.py, `error_boundary`);
anything else is a bug in nrkdeblur and keeps its traceback. Settings errors are usage
errors (exit status 2), the others mean a file, a run or a machine failed (exit status 1).
"""


class NrkdeblurError(Exception):
    """A file, folder, run or machine that nrkdeblur cannot use; the message is one line."""


class SettingsError(NrkdeblurError, ValueError):
    """A setting, or a combination of settings, that nrkdeblur refuses (a usage error)."""


class DataError(NrkdeblurError, ValueError):
    """Training or evaluation data that cannot be used: missing, empty or mismatched."""


class ImageError(NrkdeblurError):
    """A photo could not be read or written; the message is one line naming the file."""
