"""A problem with the spec: where (a path people read, `servers[booking].port`) and why."""

from __future__ import annotations

from typing import NamedTuple


class Problem(NamedTuple):
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class SpecError(Exception):
    """The spec is invalid; `problems` says where and why, one line each."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
