"""Errors that stop a stage with a message for the user instead of a traceback."""


class InputError(ValueError):
    """Bad input data (a corrupt file, a malformed protocol file, a checksum mismatch).

    The message names the offending file or value and the fix.
    """
