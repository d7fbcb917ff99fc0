"""Signed acknowledgement links: bound to alert, person and time; anything else is refused."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from urllib.parse import unquote

import pytest

from mispers.domain.types import Rank
from mispers.security.ack_links import AckLink, LinkRefused, sign, verify

SECRET = b"s" * 48
NOW = dt.datetime(2026, 11, 30, 3, 0, tzinfo=dt.UTC)
LINK = AckLink("E-1:systems_checks:L1", "SGT-1", Rank.SERGEANT, NOW + dt.timedelta(days=1))


def test_a_signed_link_verifies_to_its_claims() -> None:
    assert verify(SECRET, sign(SECRET, LINK), NOW) == LINK.__class__(
        LINK.alert_id, LINK.person_id, LINK.rank, LINK.expires_at.replace(microsecond=0)
    )


def test_altered_forged_damaged_and_expired_links_are_refused() -> None:
    token = sign(SECRET, LINK)
    body, mac = token.split(".")
    other = sign(SECRET, AckLink("E-1:systems_checks:L2", "SGT-1", Rank.SERGEANT, LINK.expires_at))
    cases = {
        "forged": [sign(b"x" * 48, LINK), f"{other.split('.')[0]}.{mac}", f"{body}.{mac[:-2]}AA"],
        "malformed": [body, "abcde.x"],
    }
    for code, tokens in cases.items():
        for bad in tokens:
            with pytest.raises(LinkRefused) as refused:
                verify(SECRET, bad, NOW)
            assert refused.value.code == code, bad
    with pytest.raises(LinkRefused) as expired:
        verify(SECRET, token, LINK.expires_at)
    assert expired.value.code == "expired" and "expired" in expired.value.message


def test_the_pager_signs_a_link_for_the_person_on_duty_lasting_seven_days(tmp_path: Path) -> None:
    from activities.alerts import Pager
    from mispers.domain.state import Alert
    from mispers.domain.types import ObligationKind
    from mispers.rota import RotaFile

    rota = tmp_path / "rota.csv"
    rota.write_text("rank,person_id,email,days,start,end\nsergeant,SGT-1,s@f.test,*,00:00,00:00\n")
    raised = dt.datetime.now(dt.UTC)
    alert = Alert(
        alert_id=LINK.alert_id,
        episode_id="E-1",
        obligation_id="systems_checks",
        kind=ObligationKind.SYSTEMS_CHECKS,
        due_at=raised,
        escalation_level=1,
        rank=Rank.SERGEANT,
        raised_at=raised,
        scheduled_at=raised,
    )
    paged = Pager(RotaFile(rota), SECRET, "https://mispers.force.example/").address(alert, None)
    assert paged.recipient is not None and paged.recipient.person_id == "SGT-1"
    assert paged.ack_url is not None
    assert paged.ack_url.startswith("https://mispers.force.example/ack?token=")
    link = verify(SECRET, unquote(paged.ack_url.split("token=", 1)[1]), raised)
    assert (link.alert_id, link.person_id) == (LINK.alert_id, "SGT-1")
    assert abs(link.expires_at - raised - dt.timedelta(days=7)) < dt.timedelta(seconds=5)
    nobody = Pager(RotaFile(rota), SECRET, "http://x").address(
        alert.model_copy(update={"rank": Rank.INSPECTOR}), None
    )
    assert nobody.unstaffed and nobody.recipient is None
