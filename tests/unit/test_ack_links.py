"""Signed acknowledgement links: bound to alert, person and time; anything else is refused."""

from __future__ import annotations

import datetime as dt

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
