"""Protection of child data end to end, on a real Temporal dev server with the real worker and API.

One full episode goes through the API (every kind of event, refusals and error answers
included). Then: the engine's stored history, read without the codec, and the server's SQLite
file hold none of the child's personal data; the same history decodes with the codec and
replays; search attributes, workflow ids and task queues carry nothing personal; the codec
server decodes it for an auditor and audits that; and nothing personal reached a log line or an
error answer. Key rotation mid-episode is a second episode.

The server is this module's own (not the session's `dev_env`) so that its SQLite file can be
scanned.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import logging
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload, Payloads, WorkflowExecution
from temporalio.api.history.v1 import History
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from mispers.api.app import create_app
from mispers.api.auth import load_secret, mint_token
from mispers.config import Settings
from mispers.domain import state_memo
from mispers.domain.messages import child_workflow_id, episode_workflow_id
from mispers.domain.types import Role
from mispers.engine.client import get_episode_state, submit_event
from mispers.engine.search_attributes import ALL as SEARCH_ATTRIBUTES
from mispers.logs import configure_logging
from mispers.policy import PinnedPolicy
from mispers.security.audit import JsonlAuditSink, audit_path
from mispers.security.codec import (
    ENCODING,
    EncryptionCodec,
    UnknownKeyError,
    encrypting,
    key_id_of,
)
from mispers.security.keyring import KeyRing, open_ring
from testkit.factories import envelope, event
from tests.conftest import eventually, start_dev_server
from worker import build_worker, workflow_runner
from workflows.child_record import ChildRecord
from workflows.episode import MissingChildEpisode

pytestmark = pytest.mark.integration

# Distinctive values, so that finding one anywhere can only mean a leak.
NAME = "Zephyrine Quartermaine"
DOB = "2011-03-14"
POSTCODES = ("QX7 4ZW", "QX8 5ZW", "QX9 6ZW", "QX6 3ZW")
FREE_TEXT = (
    "under the Quillon viaduct",  # last seen
    "argument about Kestrelmoor",  # circumstances
    "Ottoline Vantablack",  # social worker's name
    "disclosed meeting Brannigan",  # disclosure
    "rationale Pellucidar",  # risk rationale
)


def secret_strings() -> list[str]:
    values = [NAME, DOB, *FREE_TEXT]
    for postcode in POSTCODES:
        values += [postcode, postcode.replace(" ", ""), postcode.lower().replace(" ", "")]
    return values


def leaks(text: str) -> list[str]:
    return [s for s in secret_strings() if s.lower() in text.lower()]


def leaks_bytes(blob: bytes) -> list[str]:
    lowered = blob.lower()
    return [s for s in secret_strings() if s.lower().encode() in lowered]


# The engine ----------------------------------------------------------------------------------


@dataclass
class Engine:
    env: WorkflowEnvironment
    db: Path
    settings: Settings
    converter: DataConverter

    @property
    def plain(self) -> Client:
        """A client with no codec: what anyone with access to the Temporal frontend has."""
        return Client(
            self.env.client.service_client,
            namespace=self.env.client.namespace,
            data_converter=pydantic_data_converter,
        )

    def client_with(self, converter: DataConverter) -> Client:
        return Client(
            self.env.client.service_client,
            namespace=self.env.client.namespace,
            data_converter=converter,
        )


@pytest.fixture(scope="module")
async def engine(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Engine]:
    base = tmp_path_factory.mktemp("encryption")
    db = base / "temporal.db"
    settings = Settings(data_dir=base / "data", task_queue=f"enc-{uuid.uuid4().hex[:8]}")
    converter = encrypting(pydantic_data_converter, open_ring(settings, env={}))

    env = await start_dev_server(db, converter)
    async with env:
        yield Engine(env, db, settings, converter)


# One full episode through the API ---------------------------------------------------------------


@dataclass
class Run:
    episode_id: str
    child_ref: str
    log_buffer: io.StringIO = field(default_factory=io.StringIO)
    answers: list[httpx.Response] = field(default_factory=list)
    error_answers: list[httpx.Response] = field(default_factory=list)


@contextlib.contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """Every log line of this process (worker, activities, API, SDK) into a buffer."""
    configure_logging()
    root = logging.getLogger()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous_stream = handler.setStream(buffer)
    previous_level = root.level
    root.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        handler.setStream(previous_stream)
        root.setLevel(previous_level)


class Api:
    def __init__(self, http: httpx.AsyncClient, settings: Settings) -> None:
        self.http = http
        self.secret = load_secret(settings)

    def headers(self, role: Role, subject: str = "PC-101") -> dict[str, str]:
        token = mint_token(self.secret, role, subject)
        return {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/cloudevents+json",
        }

    async def post(self, body: Any, role: Role = Role.OFFICER, **headers: str) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return await self.http.post(
            "/v1/events", content=content, headers={**self.headers(role), **headers}
        )


def _at(minutes_ago: float) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes_ago)).isoformat()


async def _drive_full_episode(api: Api, run: Run) -> None:
    ep, child = run.episode_id, run.child_ref
    p1, p2, p3, p4 = POSTCODES

    async def ok(kind: str, data: dict[str, Any], role: Role = Role.OFFICER) -> None:
        answer = await api.post(envelope(kind, ep, _at(1), data), role)
        run.answers.append(answer)
        assert answer.status_code == 202, (kind, answer.text)

    await ok(
        "episode.reported",
        {
            "child": {"child_ref": child, "name": NAME, "date_of_birth": DOB},
            "last_seen_at": _at(60),
            "last_seen_location": {"description": FREE_TEXT[0], "postcode": p1},
            "circumstances": FREE_TEXT[1],
        },
        Role.SYSTEM,
    )
    await ok("enquiry.recorded", {"kind": "systems_checked", "outcome": "checked"})
    await ok(
        "social_services.contacted",
        {"contact_name": FREE_TEXT[2], "summary": "told them"},
    )
    await ok(
        "risk.assessed",
        {"level": "high", "rationale": FREE_TEXT[4], "assessed_by": "SGT-7", "rank": "sergeant"},
        Role.SUPERVISOR,
    )
    await ok("linked_person.identified", {"location": {"postcode": p2}})
    await ok(
        "sighting.reported",
        {"seen_at": _at(30), "location": {"description": "near the lock", "postcode": p3}},
    )
    await ok(
        "child.found",
        {"found_at": _at(5), "location": {"description": "a friend's flat", "postcode": p4}},
    )
    await ok(
        "safe_and_well.completed",
        {"disclosures": [{"kind": "other", "summary": FREE_TEXT[3]}], "outcome": "well"},
    )
    await ok("return_interview.completed", {"outcome": "held"})
    await ok("social_services.contacted", {"purpose": "return_notification", "summary": "back"})
    await ok("linked_person.resolved", {"outcome": "eliminated", "rationale": "alibi"})

    # The rules refuse closure with obligations open: a 409, which must not echo the rationale.
    refused = await api.post(
        envelope("closure.requested", ep, _at(1), {"rationale": f"closing {NAME}"})
    )
    assert refused.status_code == 409, refused.text
    run.error_answers.append(refused)
    open_ids = [o["id"] for o in refused.json()["refusal"]["details"]["open_obligations"]]
    waivers = [{"obligation_id": oid, "reason": "reviewed"} for oid in open_ids]
    await ok("closure.approved", {"waivers": waivers, "rationale": "reviewed"}, Role.SUPERVISOR)


async def _error_paths(api: Api, run: Run) -> None:
    """Every kind of refusal the API answers, each request carrying personal data."""
    ep = run.episode_id
    reported = envelope(
        "episode.reported",
        f"{ep}-x",
        _at(1),
        {"child": {"child_ref": run.child_ref, "name": NAME, "date_of_birth": DOB}},
    )
    cases: list[tuple[int, Any, Role, dict[str, str]]] = [
        # malformed JSON quoting a name
        (400, f'{{"name": "{NAME}", '.encode(), Role.SYSTEM, {}),
        # a date of birth that is not a date
        (
            422,
            {
                **reported,
                "data": {
                    **reported["data"],
                    "child": {**reported["data"]["child"], "date_of_birth": NAME},
                },
            },
            Role.SYSTEM,
            {},
        ),
        # a name over the length limit
        (
            422,
            {
                **reported,
                "data": {
                    **reported["data"],
                    "child": {**reported["data"]["child"], "name": NAME * 12},
                },
            },
            Role.SYSTEM,
            {},
        ),
        # an unknown field holding personal data
        (
            422,
            {**reported, "data": {**reported["data"], "home_postcode": POSTCODES[0]}},
            Role.SYSTEM,
            {},
        ),
        # an event for an episode never reported
        (
            404,
            envelope(
                "sighting.reported",
                f"{ep}-never",
                _at(1),
                {
                    "seen_at": _at(2),
                    "location": {"postcode": POSTCODES[1], "description": FREE_TEXT[0]},
                },
            ),
            Role.OFFICER,
            {},
        ),
        # a supervisor decision from an officer, to the closed episode that judges authority
        (409, envelope("closure.approved", ep, _at(1), {"rationale": NAME}), Role.OFFICER, {}),
        # a rank above the token's, to an episode never reported
        (
            404,
            envelope("risk.assessed", f"{ep}-never", _at(1), {"rank": "superintendent"}),
            Role.OFFICER,
            {},
        ),
        # no token at all
        (401, reported, Role.SYSTEM, {"Authorization": ""}),
        # a wrong content type
        (415, reported, Role.SYSTEM, {"Content-Type": "text/plain"}),
    ]
    for status, body, role, headers in cases:
        answer = await api.post(body, role, **headers)
        run.error_answers.append(answer)
        assert answer.status_code == status, (status, answer.text)
    # A closed episode takes nothing more (409), a repeat is a duplicate (202).
    late = await api.post(
        envelope(
            "sighting.reported",
            ep,
            _at(1),
            {"seen_at": _at(1), "location": {"postcode": POSTCODES[2]}},
        )
    )
    assert late.status_code == 409, late.text
    run.error_answers.append(late)


@pytest.fixture(scope="module")
async def full_run(engine: Engine) -> AsyncIterator[Run]:
    run = Run(episode_id=f"ENC-{uuid.uuid4().hex[:8]}", child_ref=f"C-{uuid.uuid4().hex[:8]}")
    settings = engine.settings
    app = create_app(settings, engine.env.client)
    transport = httpx.ASGITransport(app=app, client=("10.9.8.7", 4321))
    with captured_logs() as logs:
        async with (
            build_worker(engine.env.client, settings),
            httpx.AsyncClient(transport=transport, base_url="http://api") as http,
        ):
            api = Api(http, settings)
            await _drive_full_episode(api, run)
            handle = engine.env.client.get_workflow_handle(episode_workflow_id(run.episode_id))
            await handle.result()
            await _error_paths(api, run)
            run.log_buffer = logs
            yield run


# Inspecting what the engine stored ------------------------------------------------------------

PAYLOAD = "temporal.api.common.v1.Payload"


def payloads_in(message: Message, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Payload]]:
    """Every Payload inside a history (or any proto), with the field path leading to it."""
    for descriptor, value in message.ListFields():
        if descriptor.type != descriptor.TYPE_MESSAGE:
            continue
        where = (*path, descriptor.name)
        kind = descriptor.message_type
        assert kind is not None
        if kind.GetOptions().map_entry:
            if kind.fields_by_name["value"].type != descriptor.TYPE_MESSAGE:
                continue
            items = [((*path, f"{descriptor.name}[{k}]"), v) for k, v in value.items()]
        elif descriptor.is_repeated:
            items = [(where, v) for v in value]
        else:
            items = [(where, value)]
        for at, item in items:
            if item.DESCRIPTOR.full_name == PAYLOAD:
                yield ".".join(at), item
            else:
                yield from payloads_in(item, at)


def is_search_attribute(path: str) -> bool:
    return "search_attributes" in path


# The SDK core's own bookkeeping in markers, written as plain JSON below the codec: a patch's id,
# and a local activity's sequence number, type and times (its result is encrypted as usual).
CORE_MARKER_METADATA = {
    "marker_recorded_event_attributes.details[patch-data].payloads": {"id", "deprecated"},
    "marker_recorded_event_attributes.details[data].payloads": {
        "seq",
        "attempt",
        "activity_id",
        "activity_type",
        "complete_time",
        "backoff",
        "original_schedule_time",
        "activation_index",
    },
}


def core_marker_metadata(path: str, payload: Payload) -> bool:
    """True for the core's plain marker bookkeeping, after checking it holds only its own keys
    (so nothing of Mispers can hide in it); False for every other payload."""
    field = next((f for f in CORE_MARKER_METADATA if path.endswith(f)), None)
    if field is None:
        return False
    assert payload.metadata["encoding"] == b"json/plain", (path, dict(payload.metadata))
    document = json.loads(payload.data)
    assert set(document) <= CORE_MARKER_METADATA[field], (path, sorted(document))
    return True


def protected(path: str, payload: Payload) -> bool:
    """A payload the Mispers codec must have encrypted (search attributes are the documented,
    non-personal exception; the core's marker bookkeeping never passes through a codec)."""
    return not is_search_attribute(path) and not core_marker_metadata(path, payload)


async def histories(engine: Engine, run: Run) -> dict[str, WorkflowHistory]:
    plain = engine.plain
    return {
        wid: await plain.get_workflow_handle(wid).fetch_history()
        for wid in (episode_workflow_id(run.episode_id), child_workflow_id(run.child_ref))
    }


def sqlite_values(db: Path) -> Iterator[tuple[str, bytes]]:
    """Every text and blob value in every table of the server's SQLite file (read-only, beside
    the running server: WAL mode allows it)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    if isinstance(value, bytes):
                        yield table, value
                    elif isinstance(value, str):
                        yield table, value.encode()
    finally:
        conn.close()


# The tests --------------------------------------------------------------------------------------


async def test_stored_history_holds_only_ciphertext(engine: Engine, full_run: Run) -> None:
    found = await histories(engine, full_run)
    total = 0
    for wid, history in found.items():
        blob = b"".join(e.SerializeToString() for e in history.events)
        assert leaks_bytes(blob) == [], f"{wid}: personal data stored in clear"
        for path, payload in payloads_in(History(events=history.events)):
            if not protected(path, payload):
                continue
            total += 1
            assert payload.metadata["encoding"] == ENCODING, (wid, path, dict(payload.metadata))
            assert key_id_of(payload) == engine.converter.payload_codec.ring.active.id  # type: ignore[union-attr]
    assert total > 20  # inputs, updates and their results, queries' answers, activities


async def test_plain_text_injection_is_refused_and_the_failure_is_encrypted(
    engine: Engine, pinned: PinnedPolicy, tmp_path: Path
) -> None:
    """A payload written without the codec (here a signal from a client that has none) is never
    taken as input: the worker fails the workflow task, naming the problem, and that failure is
    itself stored encrypted (message and stack trace in encoded attributes)."""
    settings = Settings(data_dir=engine.settings.data_dir, task_queue=f"inj-{uuid.uuid4().hex[:8]}")
    episode_id = f"INJ-{uuid.uuid4().hex[:8]}"
    now = dt.datetime.now(dt.UTC)
    reported = event(
        "episode.reported",
        episode_id,
        now,
        {"child": {"child_ref": f"C-{episode_id}"}, "last_seen_at": now.isoformat()},
    )
    async with build_worker(engine.env.client, settings):
        await submit_event(engine.env.client, reported, pinned, settings.task_queue)
        handle = engine.plain.get_workflow_handle(episode_workflow_id(episode_id))
        await handle.signal("injected", "INJECTED-not-encrypted")

        async def failed_tasks() -> list[Any]:
            history = await handle.fetch_history()
            return [
                e.workflow_task_failed_event_attributes.failure
                for e in history.events
                if e.HasField("workflow_task_failed_event_attributes")
            ]

        [failure, *_] = await eventually(failed_tasks, bool)
        await handle.terminate("test over")
    assert failure.message == "Encoded failure"
    assert failure.stack_trace == ""
    assert failure.encoded_attributes.metadata["encoding"] == ENCODING
    decoded = await engine.converter.decode_failure(failure)
    assert "refusing an unencrypted payload" in str(decoded)


async def test_sqlite_file_holds_none_of_the_childs_data(engine: Engine, full_run: Run) -> None:
    # A canary written without the codec proves the scan sees payloads in clear when they are.
    canary = f"CANARY-{uuid.uuid4().hex}"
    handle = await engine.plain.start_workflow(
        "NoSuchWorkflow", canary, id=f"canary-{uuid.uuid4().hex[:8]}", task_queue="canary-nobody"
    )
    await handle.terminate("canary done")
    values = list(sqlite_values(engine.db))
    assert any(canary.encode() in value for _, value in values), "the scan cannot see payloads"

    leaked = {(table, s) for table, value in values for s in leaks_bytes(value)}
    assert leaked == set()
    # The raw files too (free pages, WAL frames not yet checkpointed).
    for path in engine.db.parent.glob(engine.db.name + "*"):
        assert leaks_bytes(path.read_bytes()) == [], path.name


async def test_history_decodes_and_replays_with_the_codec(engine: Engine, full_run: Run) -> None:
    codec = engine.converter.payload_codec
    assert isinstance(codec, EncryptionCodec)
    found = await histories(engine, full_run)
    decoded_text = ""
    for history in found.values():
        encrypted = [
            p for path, p in payloads_in(History(events=history.events)) if protected(path, p)
        ]
        decoded = await codec.decode(encrypted)
        decoded_text += "".join(p.data.decode("utf-8", "replace") for p in decoded)
    assert NAME in decoded_text and DOB in decoded_text and POSTCODES[0] in decoded_text

    replayer = Replayer(
        workflows=[MissingChildEpisode, ChildRecord],
        data_converter=engine.converter,
        workflow_runner=workflow_runner(),
    )
    for history in found.values():
        result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
        assert result.replay_failure is None


async def test_visibility_carries_no_personal_data(engine: Engine, full_run: Run) -> None:
    seen: list[str] = []
    async for execution in engine.plain.list_workflows(
        f"TaskQueue = '{engine.settings.task_queue}'"
    ):
        seen.append(execution.id)
        raw = execution.raw_info
        visible = [
            execution.id,
            execution.run_id,
            execution.task_queue,
            execution.workflow_type,
            json_format.MessageToJson(raw.search_attributes),
        ]
        assert leaks(" ".join(visible)) == [], execution.id
        for _, payload in payloads_in(raw.memo):
            assert payload.metadata["encoding"] == ENCODING
        # Search attributes: only the ones the contract names, holding refs and codes.
        names = set(raw.search_attributes.indexed_fields) - {"BuildIds", "TemporalChangeVersion"}
        assert names <= {k.name for k in SEARCH_ATTRIBUTES}, names
    assert episode_workflow_id(full_run.episode_id) in seen
    assert child_workflow_id(full_run.child_ref) in seen


async def test_the_state_memo_is_sealed_and_holds_the_childs_data(
    engine: Engine, full_run: Run
) -> None:
    """The memo a detail read comes from holds the whole state (the child's name, date of
    birth, the places): what the server keeps of it is ciphertext; with the codec it opens."""
    described = await engine.plain.workflow_service.describe_workflow_execution(
        DescribeWorkflowExecutionRequest(
            namespace=engine.plain.namespace,
            execution=WorkflowExecution(workflow_id=episode_workflow_id(full_run.episode_id)),
        )
    )
    sealed = described.workflow_execution_info.memo.fields[state_memo.STATE_MEMO]
    assert sealed.metadata["encoding"] == ENCODING
    assert leaks_bytes(sealed.SerializeToString()) == []
    [opened] = await engine.converter.decode([sealed])
    state = state_memo.unpack(opened)
    assert state.child is not None and NAME in state.model_dump_json()
    assert DOB in state.model_dump_json() and POSTCODES[0] in state.model_dump_json()


async def test_codec_server_decodes_real_history_for_an_auditor_and_audits_it(
    engine: Engine, full_run: Run
) -> None:
    history = (await histories(engine, full_run))[episode_workflow_id(full_run.episode_id)]
    started = history.events[0].workflow_execution_started_event_attributes.input
    body = json_format.MessageToDict(started)
    app = create_app(engine.settings, engine.env.client)
    secret = load_secret(engine.settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("10.0.0.5", 1)), base_url="http://api"
    ) as http:
        officer = mint_token(secret, Role.OFFICER, "PC-9")
        denied = await http.post(
            "/codec/decode", json=body, headers={"Authorization": f"Bearer {officer}"}
        )
        assert denied.status_code == 403
        auditor = mint_token(secret, Role.AUDITOR, "auditor-ward")
        answer = await http.post(
            "/codec/decode",
            json=body,
            headers={"Authorization": f"Bearer {auditor}", "X-Namespace": "default"},
        )
    assert answer.status_code == 200, answer.text
    decoded = json_format.ParseDict(answer.json(), Payloads()).payloads
    assert all(p.metadata["encoding"] == b"json/plain" for p in decoded)
    assert full_run.episode_id in b"".join(p.data for p in decoded).decode()

    records = JsonlAuditSink(audit_path(engine.settings)).for_episode(full_run.episode_id)
    decodes = [r for r in records if r.action == "decode_payloads"]
    assert [(r.who.subject, r.who.role, r.from_) for r in decodes] == [
        ("auditor-ward", "auditor", "10.0.0.5")
    ]
    assert leaks(decodes[0].to_json()) == []


async def test_no_error_answer_echoes_personal_data(full_run: Run) -> None:
    assert len(full_run.error_answers) >= 10
    for answer in full_run.error_answers:
        assert leaks(answer.text) == [], (answer.status_code, answer.text)
        assert leaks(json.dumps(dict(answer.headers))) == []


async def test_rotation_mid_episode(engine: Engine, pinned: PinnedPolicy, tmp_path: Path) -> None:
    """Started under key 1, finished after rotation to key 2: a worker started before the
    rotation keeps up (it re-reads the ring), a worker started after finishes the episode, the
    history decodes and replays with the ring, and not without key 1."""
    settings = Settings(data_dir=tmp_path, task_queue=f"rot-{uuid.uuid4().hex[:8]}")
    ring_path = tmp_path / "keys.json"
    KeyRing.create(ring_path)
    before = engine.client_with(encrypting(pydantic_data_converter, KeyRing.load(ring_path)))
    episode_id = f"ROT-{uuid.uuid4().hex[:8]}"

    async def send(client: Client, kind: str, data: dict[str, Any] | None = None) -> None:
        now = dt.datetime.now(dt.UTC)
        defaults: dict[str, Any] = {
            "episode.reported": {
                "child": {"child_ref": f"C-{episode_id}", "name": NAME, "date_of_birth": DOB},
                "last_seen_at": (now - dt.timedelta(hours=1)).isoformat(),
            },
            "child.found": {"found_at": now.isoformat(), "location": {"postcode": POSTCODES[3]}},
        }
        outcome = await submit_event(
            client,
            event(kind, episode_id, now, {**defaults.get(kind, {}), **(data or {})}),
            pinned,
            settings.task_queue,
        )
        assert outcome.status == "accepted"

    async with build_worker(before, settings):
        await send(before, "episode.reported")
        await send(before, "enquiry.recorded")
        first = KeyRing.load(ring_path).active.id
        second = KeyRing.load(ring_path).rotate().id
        after_ring = KeyRing.load(ring_path)
        after = engine.client_with(encrypting(pydantic_data_converter, after_ring))
        await send(after, "risk.assessed")  # encrypted under key 2, decoded by the old worker
        state = await get_episode_state(before, episode_id)
        assert state is not None and state.risk is not None and state.risk.level.value == "high"

    async with build_worker(after, settings):  # a worker started after the rotation
        await send(after, "child.found")
        await send(after, "safe_and_well.completed")
        state = await get_episode_state(after, episode_id)
        assert state is not None
        waivers = [{"obligation_id": o.id, "reason": "reviewed"} for o in state.outstanding()]
        await send(after, "closure.approved", {"waivers": waivers})
        handle = after.get_workflow_handle(episode_workflow_id(episode_id))
        await handle.result()

    history = await engine.plain.get_workflow_handle(
        episode_workflow_id(episode_id)
    ).fetch_history()
    key_ids = {
        key_id_of(p)
        for path, p in payloads_in(History(events=history.events))
        if protected(path, p)
    }
    assert key_ids == {first, second}
    assert leaks_bytes(b"".join(e.SerializeToString() for e in history.events)) == []

    replayer = Replayer(
        workflows=[MissingChildEpisode, ChildRecord],
        data_converter=encrypting(pydantic_data_converter, KeyRing.load(ring_path)),
        workflow_runner=workflow_runner(),
    )
    await replayer.replay_workflow(history)

    only_new = EncryptionCodec(KeyRing([after_ring.get(second)]))  # type: ignore[list-item]
    started = history.events[0].workflow_execution_started_event_attributes.input.payloads
    with pytest.raises(UnknownKeyError, match=first):
        await only_new.decode(started)


async def test_no_log_line_holds_personal_data(full_run: Run) -> None:
    """Last in the module: the buffer holds every line since the episode began (worker,
    activities, API, SDK, codec server calls of the tests above)."""
    text = full_run.log_buffer.getvalue()
    lines = text.splitlines()
    assert any(full_run.episode_id in line for line in lines)  # the capture did capture
    assert leaks(text) == [], [line for line in lines if leaks(line)][:5]
