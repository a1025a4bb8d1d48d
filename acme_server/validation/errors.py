"""The one exception validators raise, carrying what the scheduler needs to decide.

`problem_type` is the ACME error type (`dns`, `connection`, `unauthorized`, ...) that ends up
in the challenge's error document; `transient` tells the scheduler whether another attempt
might succeed (a record still propagating, a server still starting) or the failure is final.
"""

from __future__ import annotations

from acme_server.domain.problems import ProblemType


class ValidationError(Exception):
    """A challenge validation attempt failed; `detail` is shown to the ACME client."""

    def __init__(self, problem_type: ProblemType, detail: str, *, transient: bool = False) -> None:
        super().__init__(detail)
        self.problem_type = problem_type
        self.detail = detail
        self.transient = transient

    def __repr__(self) -> str:
        return (
            f"ValidationError({self.problem_type.value!r}, {self.detail!r}, "
            f"transient={self.transient!r})"
        )
