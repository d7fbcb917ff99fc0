"""Which refusals of an Update `submit_event` sends again: only the server's "not ready" (the
run was continuing as new and recorded nothing), never a refusal that means something."""

from __future__ import annotations

from google.protobuf.any_pb2 import Any as AnyProto
from temporalio.api.common.v1 import GrpcStatus
from temporalio.service import RPCError, RPCStatusCode

from mispers.engine.client import _not_ready

FAILURES = "type.googleapis.com/temporal.api.errordetails.v1."


def refusal(code: RPCStatusCode, detail: str | None) -> RPCError:
    status = GrpcStatus(code=code.value, message="refused")
    if detail is not None:
        status.details.append(AnyProto(type_url=FAILURES + detail))
    return RPCError("refused", code, status.SerializeToString())


def test_not_ready_is_sent_again() -> None:
    assert _not_ready(refusal(RPCStatusCode.FAILED_PRECONDITION, "WorkflowNotReadyFailure"))


def test_other_refusals_are_not() -> None:
    assert not _not_ready(refusal(RPCStatusCode.NOT_FOUND, "NotFoundFailure"))
    assert not _not_ready(refusal(RPCStatusCode.FAILED_PRECONDITION, None))
    assert not _not_ready(refusal(RPCStatusCode.INVALID_ARGUMENT, "BadRequest"))
