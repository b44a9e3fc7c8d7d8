"""Errors that reach the user as one line (see the command-line conventions in the spec)."""

from __future__ import annotations


class InputError(Exception):
    """Bad input: names the file and the field so the user can fix it without a traceback.

    ``field`` is a dotted path into the document (``query_types[2].slo.ttft_s``) or ``-`` when
    the problem is with the file as a whole.
    """

    def __init__(self, file: str | None, field: str, message: str) -> None:
        self.file = file
        self.field = field or "-"
        self.message = message
        super().__init__(self.line())

    def line(self) -> str:
        # An argument that is not a file (``--rate-scale``) is named by its field alone.
        if not self.file:
            return f"{self.field}: {self.message}"
        return f"{self.file}: {self.field}: {self.message}"

    def in_file(self, file: str) -> InputError:
        """The same error attributed to ``file`` (used when a check runs before the file is known)."""
        return InputError(file, self.field, self.message)
