"""The one error family. Domain code raises these with a message written for the
technician; the CLI turns them into one line (or one line per problem) and exit 1."""

from __future__ import annotations

import re
from dataclasses import dataclass

from installer.i18n import _, ngettext

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # control characters, C0 and C1


def printable(text: str) -> str:
    """TEXT safe to show on a terminal or in a log line: control characters (an escape sequence,
    a newline splitting a line) written as \\xNN."""
    return CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class OnehciError(Exception):
    """Something the technician can fix; the message says what and how."""


class Reported(OnehciError):
    """A failure the command has already shown (a site's problems, a failed smoke step): the
    command group exits 1 without another line."""


@dataclass(frozen=True)
class Problem:
    """One finding about a site file: where it is and what is wrong."""

    file: str
    line: int | None
    field: str
    message: str
    severity: str = "error"  # "error" or "warning"

    def render(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        field = f" {self.field}:" if self.field else ""
        if self.severity == "warning":
            # FILE:LINE field: stay first and untranslated (editors and scripts read them)
            line = _("{where}{field} warning: {message}")
        else:
            line = "{where}{field} {message}"
        return printable(line.format(where=where, field=field, message=self.message))

    def as_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "field": self.field,
                "message": self.message, "severity": self.severity}


class SiteInvalid(OnehciError):
    """A site file has errors; all of them are listed, with the warnings."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        errors = [p for p in problems if p.severity == "error"]
        super().__init__(ngettext("{count} error in the site file", "{count} errors in the site file",
                                  len(errors)).format(count=len(errors)))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]
