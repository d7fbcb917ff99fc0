"""Client-side calls shared by the API, the CLI, the benchmarks and the tests: one place that
knows how an event reaches its episode and how refusals and duplicates come back."""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from temporalio.api.common.v1 import WorkflowExecution as ExecutionRef
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecution,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.client import (
    WorkflowExecutionStatus as ExecStatus,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.converter import DataConverter
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import PayloadLimitsConfig, RPCError, RPCStatusCode

from mispers.config import Settings
from mispers.domain.child_record import ChildRecordState
from mispers.domain.events import REF_PATTERN, EpisodeReported, EventBase
from mispers.domain.messages import (
    DUPLICATE_ERROR,
    EPISODE_WORKFLOW,
    REFUSED_ERROR,
    TASK_QUEUE,
    EpisodeInput,
    RecordEventInput,
    RecordEventResult,
    child_workflow_id,
    episode_workflow_id,
    event_key,
    update_id_for,
)
from mispers.domain.refusals import Refusal
from mispers.domain.state import EpisodeState, EpisodeSummary
from mispers.domain.state_memo import MEMO_WARN_BYTES, STATE_MEMO, unpack
from mispers.domain.types import EpisodeStatus, Flag, RiskLevel
from mispers.engine import search_attributes as sa
from mispers.policy.model import PinnedPolicy

__all__ = [
    "EpisodeNotFound",
    "EpisodePage",
    "EventRejected",
    "SubmitOutcome",
    "count_episodes",
    "engine_reachable",
    "episodes_query",
    "get_child_record",
    "get_episode_state",
    "list_episodes",
    "query_episode_state",
    "read_state_memo",
    "submit_event",
]

_ = WorkflowExecutionStatus  # re-exported enum kept for callers that filter on raw status


class EpisodeNotFound(Exception):
    """An event for an episode that was never reported (the API answers 404)."""


class EventRejected(Exception):
    """The episode's rules refused the event (the API answers 409 with the refusal)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


@dataclass(frozen=True)
class SubmitOutcome:
    episode_id: str
    event_id: str
    status: Literal["accepted", "duplicate"]


async def submit_event(
    client: Client, event: EventBase, policy: PinnedPolicy, task_queue: str = TASK_QUEUE
) -> SubmitOutcome:
    """Deliver one validated event to its episode, exactly once.

    `episode.reported` starts the episode with update-with-start; every other type is an Update
    on the running episode. The Update id is derived from the event's (source, id), so a retry
    after a crash is answered by Temporal with the first outcome; the request id tells us so.
    An Update refused because the run was continuing as new is sent again to the next run.
    """
    request_id = uuid.uuid4().hex
    arg = RecordEventInput(event=event, request_id=request_id)
    for attempt in range(NOT_READY_ATTEMPTS):
        try:
            return await _submit_once(client, event, policy, task_queue, arg)
        except RPCError as exc:
            if not _not_ready(exc) or attempt + 1 == NOT_READY_ATTEMPTS:
                raise
        await asyncio.sleep(NOT_READY_BACKOFF * 2**attempt)
    raise AssertionError("unreachable")


# An Update that reaches a run in the instant it continues as new is refused as "not ready"
# (nothing recorded); the same Update then goes to the next run. Bounded: 0.2 s to 3.2 s.
NOT_READY_ATTEMPTS = 5
NOT_READY_BACKOFF = 0.2


def _not_ready(exc: RPCError) -> bool:
    return any(d.type_url.endswith("WorkflowNotReadyFailure") for d in exc.grpc_status.details)


async def _submit_once(
    client: Client,
    event: EventBase,
    policy: PinnedPolicy,
    task_queue: str,
    arg: RecordEventInput,
) -> SubmitOutcome:
    request_id = arg.request_id
    workflow_id = episode_workflow_id(event.subject)
    try:
        if isinstance(event, EpisodeReported):
            start: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
                EPISODE_WORKFLOW,
                EpisodeInput(episode_id=event.subject, policy=policy),
                id=workflow_id,
                task_queue=task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
            result = await client.execute_update_with_start_workflow(
                "record_event",
                arg,
                start_workflow_operation=start,
                id=update_id_for(event),
                result_type=RecordEventResult,
            )
        else:
            handle = client.get_workflow_handle(workflow_id)
            result = await handle.execute_update(
                "record_event", arg, id=update_id_for(event), result_type=RecordEventResult
            )
    except WorkflowUpdateFailedError as exc:
        return _from_update_failure(exc, event)
    except WorkflowAlreadyStartedError:
        return await _on_closed_episode(client, event)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            if "completed" in exc.message.lower() or "closed" in exc.message.lower():
                return await _on_closed_episode(client, event)
            raise EpisodeNotFound(event.subject) from None
        raise
    except Exception as exc:  # with-start failures wrap the cause
        cause = exc.__cause__
        if isinstance(cause, WorkflowAlreadyStartedError):
            return await _on_closed_episode(client, event)
        if isinstance(cause, WorkflowUpdateFailedError):
            return _from_update_failure(cause, event)
        raise
    status: Literal["accepted", "duplicate"] = (
        "accepted" if result.request_id == request_id else "duplicate"
    )
    return SubmitOutcome(episode_id=event.subject, event_id=event.id, status=status)


def _from_update_failure(exc: WorkflowUpdateFailedError, event: EventBase) -> SubmitOutcome:
    cause = exc.cause
    if isinstance(cause, ApplicationError):
        if cause.type == DUPLICATE_ERROR:
            return SubmitOutcome(episode_id=event.subject, event_id=event.id, status="duplicate")
        if cause.type == REFUSED_ERROR and cause.details:
            detail: Any = cause.details[0]
            raise EventRejected(Refusal.model_validate(detail)) from None
        if cause.type == REFUSED_ERROR:
            raise EventRejected(Refusal(code="refused", message=cause.message)) from None
    raise exc


async def _on_closed_episode(client: Client, event: EventBase) -> SubmitOutcome:
    """A closed episode takes no new event; a repeat of one it recorded is still a duplicate."""
    state = await get_episode_state(client, event.subject)
    if state is not None and event_key(event) in state.event_keys:
        return SubmitOutcome(episode_id=event.subject, event_id=event.id, status="duplicate")
    raise EventRejected(
        Refusal(
            code="episode_closed",
            message=f"episode {event.subject} is closed and takes no further events",
            details={"episode_id": event.subject},
        )
    )


async def get_episode_state(client: Client, episode_id: str) -> EpisodeState | None:
    """The state the episode keeps in its memo: one server call, so a supervisor's read never
    waits for a worker to replay the episode nor competes with its alerts. Stale by at most
    the workflow task in progress. The `state` query answers when the memo holds no state (an
    episode whose run began before it kept one, or a state too large to keep); None when no
    such episode exists."""
    packed = await read_state_memo(client, episode_id)
    if packed is _NO_EPISODE:
        return None
    if isinstance(packed, str):
        return unpack(packed)
    return await query_episode_state(client, episode_id)


_NO_EPISODE = object()


async def read_state_memo(client: Client, episode_id: str) -> object:
    """The packed state from the latest run's memo (only that payload is decoded)."""
    request = DescribeWorkflowExecutionRequest(
        namespace=client.namespace,
        execution=ExecutionRef(workflow_id=episode_workflow_id(episode_id)),
    )
    try:
        described = await client.workflow_service.describe_workflow_execution(request)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return _NO_EPISODE
        raise
    payload = described.workflow_execution_info.memo.fields.get(STATE_MEMO)
    if payload is None:
        return None
    [value] = await client.data_converter.decode([payload])
    return value


async def query_episode_state(client: Client, episode_id: str) -> EpisodeState | None:
    """The `state` query: the worker's state, after any workflow task in progress (a worker
    replays the episode first when it is not in its cache); None when no such episode exists."""
    handle = client.get_workflow_handle(episode_workflow_id(episode_id))
    try:
        state: EpisodeState = await handle.query("state", result_type=EpisodeState)
        return state
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    except WorkflowQueryFailedError:
        raise


async def episode_is_running(client: Client, episode_id: str) -> bool:
    desc = await client.get_workflow_handle(episode_workflow_id(episode_id)).describe()
    return desc.status == ExecStatus.RUNNING


def data_converter(settings: Settings | None = None) -> DataConverter:
    """The converter every Mispers client and worker uses: pydantic payloads, encrypted with the
    settings' key ring (mispers.security.codec). A worker uses its client's converter, so a
    client from `connect(settings)` is all it takes for both sides to agree.

    Without settings the converter does not encrypt: that is for tests that exercise the rules
    and not the protection at rest; every process of the service passes its settings."""
    from temporalio.contrib.pydantic import pydantic_data_converter

    if settings is None:
        return pydantic_data_converter
    from mispers.security.codec import encrypted_data_converter

    return encrypted_data_converter(settings)


async def connect(settings: Settings) -> Client:
    # TLS / mTLS / API key only towards an external server (the embedded one is plaintext).
    security = {} if settings.embedded else settings.connection.connect_kwargs()
    return await Client.connect(
        settings.effective_temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
        # The episode's memo holds its packed state (a few KiB, at most MEMO_BUDGET_BYTES): warn
        # past what it is meant to hold, not at every upsert over the server's 2 KiB warning.
        payload_limits=PayloadLimitsConfig(memo_warn_size=MEMO_WARN_BYTES),
        **security,
    )


# --- reads for the supervisor API and CLI ---------------------------------------------------


@dataclass(frozen=True)
class EpisodePage:
    episodes: list[EpisodeSummary]
    next_page_token: bytes | None


def episodes_query(
    *,
    status: EpisodeStatus | None = None,
    risk: RiskLevel | None = None,
    overdue: bool | None = None,
    child_ref: str | None = None,
    flag: Flag | None = None,
    open_only: bool = False,
) -> str:
    """A visibility query over the search attributes (the server's index, never a scan).

    Values are closed vocabularies or a checked reference; quotes are refused rather than
    escaped, so no value can extend the query."""
    # A run that continued as new keeps its last search attributes in the index: without this
    # an episode would be listed (and counted) once for each run it has had.
    clauses = [f"WorkflowType = '{EPISODE_WORKFLOW}'", "ExecutionStatus != 'ContinuedAsNew'"]
    if status is not None:
        clauses.append(f"{sa.EPISODE_STATUS.name} = '{EpisodeStatus(status).value}'")
    if risk is not None:
        clauses.append(f"{sa.RISK_LEVEL.name} = '{RiskLevel(risk).value}'")
    if overdue is not None:
        clauses.append(f"{sa.OVERDUE_COUNT.name} {'>' if overdue else '='} 0")
    if child_ref is not None:
        if not re.fullmatch(REF_PATTERN, child_ref):
            raise ValueError("child_ref must match " + REF_PATTERN)
        clauses.append(f"{sa.CHILD_REF.name} = '{child_ref}'")
    if flag is Flag.LOOKED_AFTER:  # its own attribute, not one of the episode's flags
        clauses.append(f"{sa.LOOKED_AFTER.name} = true")
    elif flag is not None:
        clauses.append(f"{sa.EPISODE_FLAGS.name} = '{Flag(flag).value}'")
    if open_only and status is None:
        # Not yet upserted counts as open: a new episode is missing until its first task runs.
        clauses.append(f"{sa.EPISODE_STATUS.name} != '{EpisodeStatus.CLOSED.value}'")
    return " AND ".join(clauses)


async def count_episodes(client: Client, query: str) -> int:
    """How many episodes match, from the visibility index (one call, no listing)."""
    return (await client.count_workflows(query)).count


async def list_episodes(
    client: Client, query: str, *, page_size: int = 100, page_token: bytes | None = None
) -> EpisodePage:
    """One page of episode summaries, read from the search attributes alone (no query per
    workflow), so a page costs one visibility call whatever its size."""
    iterator = client.list_workflows(query, page_size=page_size, next_page_token=page_token)
    await iterator.fetch_next_page()
    episodes = [_summary_from_visibility(execution) for execution in iterator.current_page or ()]
    return EpisodePage(episodes=episodes, next_page_token=iterator.next_page_token)


def _summary_from_visibility(execution: WorkflowExecution) -> EpisodeSummary:
    attrs = execution.typed_search_attributes
    risk = attrs.get(sa.RISK_LEVEL)
    status = attrs.get(sa.EPISODE_STATUS)
    return EpisodeSummary(
        episode_id=execution.id.removeprefix(episode_workflow_id("")),
        # Not yet upserted (the first workflow task is still running): a new episode is missing.
        status=EpisodeStatus(status) if status else EpisodeStatus.MISSING,
        risk_level=RiskLevel(risk) if risk else None,
        child_ref=attrs.get(sa.CHILD_REF),
        overdue_count=attrs.get(sa.OVERDUE_COUNT) or 0,
        next_deadline=attrs.get(sa.NEXT_DEADLINE),
        flags=sorted(
            [
                *(attrs.get(sa.EPISODE_FLAGS) or ()),
                *(["looked_after"] if attrs.get(sa.LOOKED_AFTER) else []),
            ]
        ),
    )


async def get_child_record(client: Client, child_ref: str) -> ChildRecordState | None:
    """The `state` query of the child's record workflow; None when the child has none yet."""
    handle = client.get_workflow_handle(child_workflow_id(child_ref))
    try:
        record: ChildRecordState = await handle.query("state", result_type=ChildRecordState)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return record


async def engine_reachable(client: Client) -> bool:
    """A health RPC with a short deadline: a probe must answer while the engine does not."""
    try:
        return await client.service_client.check_health(timeout=timedelta(seconds=2))
    except Exception:
        return False
