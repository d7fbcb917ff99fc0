"""Synthetic episodes: a force's year of CloudEvents, shaped on published figures.

Each episode is simulated against the offline driver: the report opens obligations, and the
people of the simulation answer each obligation the rules open (on time, late or never, by
kind), the child is found after a time drawn from the national distribution, alerts are
acknowledged at varied speeds, and a supervisor closes the episode, waiving what was left.
Only events the rules accept are written, so the file posts cleanly and the driver reaches the
same state from it. The figures behind each share are in `mispers.offline.shapes` and
docs/analytics.md.
"""

from __future__ import annotations

import datetime as dt
import heapq
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter

from mispers.domain.events import AnyEvent, EventBase
from mispers.domain.locations import LocationOfConcern
from mispers.domain.state import EpisodeState
from mispers.domain.types import ObligationKind
from mispers.offline import shapes
from mispers.offline.driver import ChildRecords, EpisodeRun, Lookup, Recorded, no_locations
from mispers.policy.model import Policy

K = ObligationKind
ADAPTER: TypeAdapter[Any] = TypeAdapter(AnyEvent)
SOURCE = "mispers/synth"
AUTHORITIES = ("Lambeth", "Southwark", "Croydon", "Kent", "Essex", "Leeds", "Bristol", "Hackney")


@dataclass
class SynthEpisode:
    """One simulated episode: the accepted CloudEvents (structured mode, without specversion
    only in memory) and where the rules left it."""

    episode_id: str
    events: list[dict[str, Any]]
    run: EpisodeRun

    @property
    def state(self) -> EpisodeState:
        return self.run.state


@dataclass(order=True)
class _Action:
    at: dt.datetime
    seq: int
    kind: str = field(compare=False)
    target: str = field(compare=False, default="")


def _stamp(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


class _Child:
    def __init__(self, ref: str, rng: random.Random, start: dt.date) -> None:
        self.ref = ref
        self.looked_after = rng.random() < shapes.LOOKED_AFTER_SHARE
        age = rng.choices(shapes.AGES, weights=shapes.AGE_WEIGHTS)[0]
        born = start - dt.timedelta(days=int(age * 365.25) + rng.randrange(365))
        self.date_of_birth = born.isoformat()
        self.authority = rng.choice(AUTHORITIES)
        self.host = rng.choice(AUTHORITIES) if self.looked_after and rng.random() < 0.3 else None
        self.risk = rng.choices(shapes.RISK_LEVELS, weights=shapes.RISK_WEIGHTS)[0]
        self.home_postcode = _postcode(rng)


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([w[0] for w in weighted], weights=[w[1] for w in weighted])[0]


def _postcode(rng: random.Random) -> str:
    area = rng.choice(("SE", "SW", "N", "E", "W", "NW", "CR", "BR", "LS", "BS"))
    return f"{area}{rng.randrange(1, 29)} {rng.randrange(1, 10)}{rng.choice('ABDEFGHJLN')}" + (
        rng.choice("PQRSTUWXYZ")
    )


def children_plan(
    episodes: int, days: int, rng: random.Random, start: dt.datetime, prefix: str = "SYN"
) -> list[tuple[_Child, list[dt.datetime]]]:
    """Children and their report times: a minority of children account for most episodes,
    and the next episode tends to follow soon after the last."""
    plan: list[tuple[_Child, list[dt.datetime]]] = []
    total = 0
    span = dt.timedelta(days=days)
    n = 0
    while total < episodes:
        n += 1
        child = _Child(f"{prefix}-C{n:07d}", rng, start.date())
        count = min(shapes.episodes_per_child(rng), episodes - total)
        first = start + span * rng.random()
        times = [first]
        for _ in range(count - 1):
            gap = dt.timedelta(days=rng.expovariate(1 / shapes.REPEAT_GAP_DAYS) + 1)
            times.append(times[-1] + gap)
        times = [t for t in times if t < start + span]
        if not times:
            continue
        plan.append((child, times))
        total += len(times)
    return plan


class _EpisodeSim:
    """The people around one episode, answering obligations as the rules open them."""

    def __init__(
        self,
        episode_id: str,
        child: _Child,
        reported_at: dt.datetime,
        end: dt.datetime,
        rng: random.Random,
        policy: Policy,
        records: ChildRecords,
        lookup: Lookup,
        concern_postcodes: list[str],
    ) -> None:
        self.id = episode_id
        self.child = child
        self.rng = rng
        self.end = end
        self.policy = policy
        # The stream and the record take the events from the timeline, not the alert steps.
        self.run = EpisodeRun(
            episode_id, policy, records=records, lookup=lookup, alert_steps_in_timeline=False
        )
        self.events: list[dict[str, Any]] = []
        self.queue: list[_Action] = []
        self.seq = 0
        self.seen_obligations = 0
        self.seen_alerts = 0
        self.concern = concern_postcodes
        self.reported_at = reported_at
        hours = shapes.hours_to_found(rng)
        self.found_at = reported_at + dt.timedelta(hours=hours)

    # --- plumbing -----------------------------------------------------------------------------

    def plan(self, at: dt.datetime, kind: str, target: str = "") -> None:
        self.seq += 1
        heapq.heappush(self.queue, _Action(at, self.seq, kind, target))

    def send(self, kind: str, at: dt.datetime, data: dict[str, Any]) -> bool:
        body = {
            "specversion": "1.0",
            "id": f"{self.id}-{len(self.events) + 1:03d}",
            "source": SOURCE,
            "type": f"mispers.{kind}",
            "subject": self.id,
            "time": _stamp(at),
            "data": data,
        }
        event: EventBase = ADAPTER.validate_python(
            {k: v for k, v in body.items() if k != "specversion"}
        )
        if not self.run.event(Recorded(event=event, recorded_at=at)):
            return False
        self.events.append(body)
        self.look(at)
        return True

    def delay(self, kind: ObligationKind, due: dt.datetime, at: dt.datetime) -> dt.datetime | None:
        """When someone meets an obligation due at `due` (opened at `at`), or None (never)."""
        on_time, late = shapes.MEETING.get(kind, (0.85, 0.10))
        draw = self.rng.random()
        window = max((due - at).total_seconds(), 60.0)
        if draw < on_time:
            return at + dt.timedelta(seconds=window * self.rng.uniform(0.15, 0.95))
        if draw < on_time + late:
            over = self.rng.lognormvariate(
                math.log(window * shapes.LATE_SHARE_OF_WINDOW + 600), 0.8
            )
            return due + dt.timedelta(seconds=over)
        return None

    def look(self, at: dt.datetime) -> None:
        """Plan an answer to every obligation the rules opened and to every alert raised."""
        state = self.run.state
        # both lists only grow: look at what is new since the last look
        fresh_obligations = state.obligations[self.seen_obligations :]
        self.seen_obligations = len(state.obligations)
        fresh_alerts = state.alerts[self.seen_alerts :]
        self.seen_alerts = len(state.alerts)
        for ob in fresh_obligations:
            if not ob.outstanding or ob.kind is K.CLOSURE_REVIEW:
                continue
            when = self.delay(ob.kind, ob.due_at, max(at, ob.anchor_at))
            if when is not None:
                self.plan(when, "meet", ob.id)
        for alert in fresh_alerts:
            share = shapes.ACK_SHARE if alert.escalation_level <= 2 else shapes.ACK_SHARE_REPEATS
            if self.rng.random() < share:
                minutes = self.rng.lognormvariate(math.log(shapes.ACK_MEDIAN_MINUTES), 1.0)
                self.plan(alert.raised_at + dt.timedelta(minutes=minutes), "ack", alert.alert_id)

    # --- the episode --------------------------------------------------------------------------

    def simulate(self) -> SynthEpisode:
        c, rng, t0 = self.child, self.rng, self.reported_at
        factors = ["cse_indicator"] if rng.random() < shapes.CSE_AT_REPORT_SHARE else []
        data: dict[str, Any] = {
            "child": {
                "child_ref": c.ref,
                "date_of_birth": c.date_of_birth,
                "looked_after": c.looked_after,
                "responsible_authority": c.authority,
                **({"host_authority": c.host} if c.host else {}),
            },
            "last_seen_at": _stamp(t0 - dt.timedelta(minutes=rng.randrange(30, 360))),
            "last_seen_location": {"description": "last seen", "postcode": c.home_postcode},
            "initial_risk": c.risk,
            "risk_factors": factors,
            "reported_by": {
                "role": "childrens_home" if c.looked_after else rng.choice(("parent", "school"))
            },
            "officer_id": f"PC-{rng.randrange(100, 999)}",
        }
        if not self.send("episode.reported", t0, data):
            return SynthEpisode(self.id, self.events, self.run)
        if rng.random() < shapes.SIGHTING_SHARE:
            seen = t0 + (self.found_at - t0) * rng.random()
            self.plan(seen, "sighting")
        if rng.random() < shapes.LINKED_PERSON_SHARE:
            self.plan(t0 + (self.found_at - t0) * rng.random(), "linked")
        self.plan(self.found_at, "found")
        run = self.run
        while True:
            run_wake = self._next_wake()
            action = self.queue[0] if self.queue else None
            if run_wake is not None and (action is None or run_wake < action.at):
                if run_wake >= self.end:
                    break
                run.tick(run_wake)
                self.look(run_wake)
                continue
            if action is None or action.at >= self.end:
                break
            heapq.heappop(self.queue)
            self.act(action)
            if not self.queue and run.state.status.value == "found":
                after = dt.timedelta(hours=rng.lognormvariate(math.log(6), 0.8))
                self.plan(action.at + after, "close")
        if run.state.status.value != "closed":
            run.wake_until(self.end, inclusive=True)
        return SynthEpisode(self.id, self.events, self.run)

    def _next_wake(self) -> dt.datetime | None:
        return self.run.next_wake

    def act(self, action: _Action) -> None:
        rng, at, state = self.rng, action.at, self.run.state
        officer = f"PC-{rng.randrange(100, 999)}"
        if state.status.value == "closed":
            return
        if action.kind == "ack":
            rank = rng.choice(("sergeant", "inspector", "superintendent"))
            self.send("alert.acknowledged", at, {"alert_id": action.target, "by": f"{rank}-1"})
        elif action.kind == "sighting":
            self.send("sighting.reported", at, {"seen_at": _stamp(at), "location": self.place()})
        elif action.kind == "linked":
            relation = rng.choice(("associate", "associate", "suspect", "adult_of_concern"))
            ref = f"{self.id}-P{rng.randrange(1, 9)}"
            self.send(
                "linked_person.identified",
                at,
                {"person_ref": ref, "relation": relation, "officer_id": officer},
            )
        elif action.kind == "found":
            self.send(
                "child.found",
                at,
                {
                    "found_at": _stamp(at),
                    "location": self.place(),
                    "found_by": officer,
                    "seen_in_person": True,
                },
            )
        elif action.kind == "close":
            self.close(at)
        elif action.kind == "approve":
            self.approve(at)
        elif action.kind == "meet":
            ob = state.obligation(action.target)
            if ob is not None and ob.outstanding:
                self.meet(ob.kind, ob.id, ob.subject, ob.owner.value, at, officer)

    def place(self) -> dict[str, Any]:
        rng = self.rng
        if self.concern and rng.random() < shapes.CONCERN_LOCATION_SHARE:
            return {"description": "an address", "postcode": rng.choice(self.concern)}
        if rng.random() < shapes.SAME_PLACE_SHARE:
            return {"description": "usual place", "postcode": self.child.home_postcode}
        return {"description": "a street", "postcode": _postcode(rng)}

    def meet(
        self,
        kind: ObligationKind,
        oid: str,
        subject: str | None,
        owner: str,
        at: dt.datetime,
        officer: str,
    ) -> None:
        rng, state = self.rng, self.run.state
        level = state.risk.level.value if state.risk else "medium"
        if kind is K.SYSTEMS_CHECKS:
            self.send(
                "enquiry.recorded",
                at,
                {"kind": "systems_checked", "outcome": "checked", "officer_id": officer},
            )
        elif kind is K.PNC_CIRCULATED:
            self.send(
                "enquiry.recorded",
                at,
                {"kind": "pnc_circulated", "outcome": "circulated", "officer_id": officer},
            )
        elif kind in (K.SUPERVISOR_REVIEW, K.RISK_REVIEW, K.EXPLOITATION_SCREENING):
            if kind is K.SUPERVISOR_REVIEW and rng.random() < shapes.GRADED_UP_AT_REVIEW:
                level = "high"
            rank = owner if owner in ("inspector", "superintendent") else "sergeant"
            factors = ["exploitation_screening"] if kind is K.EXPLOITATION_SCREENING else []
            self.send(
                "risk.assessed",
                at,
                {
                    "level": level,
                    "rationale": "reviewed with the information held",
                    "assessed_by": f"{rank[:3].upper()}-{rng.randrange(1, 99)}",
                    "rank": rank,
                    "factors": factors,
                },
            )
        elif kind in (K.SOCIAL_SERVICES_NOTIFIED_MISSING, K.SOCIAL_SERVICES_NOTIFIED_RETURN):
            purpose = (
                "missing_notification"
                if kind is K.SOCIAL_SERVICES_NOTIFIED_MISSING
                else "return_notification"
            )
            self.send(
                "social_services.contacted",
                at,
                {
                    "direction": "outbound",
                    "authority": subject or self.child.authority,
                    "contact_name": "duty team",
                    "method": rng.choice(("phone", "secure_email", "email")),
                    "purpose": purpose,
                    "summary": "told",
                    "officer_id": officer,
                },
            )
        elif kind is K.STRATEGY_MEETING:
            self.send(
                "strategy_meeting.held",
                at,
                {"chair": "DI-1", "agencies": ["police", "social care"], "outcome": "plan"},
            )
        elif kind is K.SAFE_AND_WELL_CHECK:
            disclosures = []
            if rng.random() < shapes.DISCLOSURE_SHARE:
                disclosures.append({"kind": _pick(rng, shapes.DISCLOSURE_KINDS)})
            self.send(
                "safe_and_well.completed",
                at,
                {
                    "officer_id": officer,
                    "in_person": True,
                    "disclosures": disclosures,
                    "outcome": "seen",
                },
            )
        elif kind is K.RETURN_INTERVIEW:
            outcome = _pick(rng, shapes.RETURN_INTERVIEW_OUTCOMES)
            data: dict[str, Any] = {"provider": "RHI service", "outcome": outcome}
            if outcome != "held":
                data["rationale"] = "recorded by the provider"
            self.send("return_interview.completed", at, data)
        elif kind is K.CRIME_RECORDING:
            self.send(
                "crime.recorded",
                at,
                {"crime_ref": f"CR-{oid}", "classification": "as disclosed", "officer_id": officer},
            )
        elif kind is K.LINKED_PERSON_RESOLUTION:
            ref = oid.split(":", 1)[1] if ":" in oid else oid
            self.send(
                "linked_person.resolved",
                at,
                {
                    "person_ref": ref,
                    "outcome": rng.choice(("traced_actioned", "traced_no_action", "eliminated")),
                    "rationale": "enquiries made",
                    "officer_id": officer,
                },
            )

    def close(self, at: dt.datetime) -> None:
        """Closure once nothing else is planned: requested when nothing blocks, then approved
        by a supervisor who waives what is left (with a reason)."""
        state = self.run.state
        if state.status.value != "found":
            return
        blocking = [o for o in state.outstanding() if o.kind is not K.CLOSURE_REVIEW]
        if not blocking and not any(o.kind is K.CLOSURE_REVIEW for o in state.obligations):
            self.send(
                "closure.requested", at, {"officer_id": "PC-100", "rationale": "all steps done"}
            )
            self.plan(at + dt.timedelta(hours=self.rng.lognormvariate(math.log(3), 0.8)), "approve")
            return
        self.approve(at)

    def approve(self, at: dt.datetime) -> None:
        state, rng = self.run.state, self.rng
        if state.status.value != "found":
            return
        waivers = [
            {"obligation_id": o.id, "reason": rng.choice(shapes.WAIVER_REASONS)}
            for o in state.outstanding()
            if o.kind is not K.CLOSURE_REVIEW
        ]
        self.send(
            "closure.approved",
            at,
            {
                "supervisor_id": "SGT-1",
                "rank": "inspector" if waivers else "sergeant",
                "rationale": "reviewed",
                "waivers": waivers,
            },
        )


def synthesize(
    episodes: int,
    days: int,
    seed: int,
    policy: Policy,
    start: dt.datetime,
    *,
    lookup: Lookup = no_locations,
    concern_postcodes: list[str] | None = None,
    children: list[tuple[_Child, list[dt.datetime]]] | None = None,
    prefix: str = "SYN",
) -> Iterator[SynthEpisode]:
    """Episodes child by child (each child's in report order, sharing its record); the caller
    sorts events by time when it writes a stream."""
    rng = random.Random(seed)
    plan = children if children is not None else children_plan(episodes, days, rng, start, prefix)
    end = start + dt.timedelta(days=days)
    records = ChildRecords()
    for child, times in plan:
        for i, reported_at in enumerate(times):
            episode_id = f"{child.ref[: -len('C0000000')]}E{child.ref[-7:]}-{i + 1}"
            erng = random.Random(f"{seed}:{child.ref[-7:]}:{i}")
            yield _EpisodeSim(
                episode_id,
                child,
                reported_at,
                end,
                erng,
                policy,
                records,
                lookup,
                concern_postcodes or [],
            ).simulate()


def register_lookup(
    register: dict[str, list[LocationOfConcern]],
) -> Lookup:
    def lookup(key: str) -> list[LocationOfConcern]:
        return list(register.get(key, []))

    return lookup


__all__ = ["LocationOfConcern", "SynthEpisode", "children_plan", "register_lookup", "synthesize"]
