"""Problem types as an enum: every document carries a full ACME URN and its default status."""

from __future__ import annotations

import json

from acme_server.domain.problems import (
    AcmeProblem,
    ProblemType,
    identifier_subproblem,
    problem_json,
)


def test_urn_and_default_status() -> None:
    assert ProblemType.BAD_NONCE.urn == "urn:ietf:params:acme:error:badNonce"
    assert ProblemType.MALFORMED.status == 400
    assert ProblemType.UNAUTHORIZED.status == 403
    assert ProblemType.RATE_LIMITED.status == 429
    assert ProblemType.SERVER_INTERNAL.status == 500


def test_problem_document() -> None:
    problem = AcmeProblem(ProblemType.ORDER_NOT_READY, "not yet", extra={"x": 1})
    assert problem.status == 403
    assert problem.to_json() == {
        "type": "urn:ietf:params:acme:error:orderNotReady",
        "detail": "not yet",
        "status": 403,
        "x": 1,
    }
    assert AcmeProblem(ProblemType.MALFORMED, "gone", status=404).to_json()["status"] == 404


def test_documents_serialise_as_plain_strings() -> None:
    doc = problem_json(
        ProblemType.DNS,
        "no record",
        subproblems=[identifier_subproblem(ProblemType.CAA, "a.example.com", "caa forbids")],
    )
    assert json.loads(json.dumps(doc)) == {
        "type": "urn:ietf:params:acme:error:dns",
        "detail": "no record",
        "status": 400,
        "subproblems": [
            {
                "type": "urn:ietf:params:acme:error:caa",
                "detail": "caa forbids",
                "status": 403,
                "identifier": {"type": "dns", "value": "a.example.com"},
            }
        ],
    }
