"""The one error type of policy loading: it names the file, the key, the line and the fix."""

from __future__ import annotations

from pathlib import Path


class PolicyError(ValueError):
    """A policy file that cannot be used, with where and how to fix it."""

    def __init__(
        self,
        problem: str,
        *,
        file: str | Path | None = None,
        key: str | None = None,
        line: int | None = None,
        fix: str | None = None,
    ) -> None:
        self.problem = problem
        self.file = str(file) if file is not None else None
        self.key = key
        self.line = line
        self.fix = fix
        super().__init__(self._format())

    def _format(self) -> str:
        where = self.file or "<policy>"
        if self.line is not None:
            where += f":{self.line}"
        text = f"{where}: "
        if self.key:
            text += f"{self.key}: "
        text += self.problem
        if self.fix:
            text += f". Fix: {self.fix}"
        return text
