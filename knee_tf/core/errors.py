"""Errors that carry one clear line per problem, printed by the CLI without a traceback."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input (manifest, DICOM file, config). ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str] | str, summary: str | None = None):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.summary = summary
        head = f"{summary}\n" if summary else ""
        super().__init__(head + "\n".join(self.problems))


class StepFailed(RuntimeError):
    """A study notebook raised; the message names the step, the cell's error and the executed copy."""
