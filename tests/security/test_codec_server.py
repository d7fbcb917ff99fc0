"""The codec server on the API: roles, CORS, the Web UI cookie, and the audit of every decode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from temporalio.contrib.pydantic import pydantic_data_converter

from mispers.api.app import create_app
from mispers.api.auth import load_secret, mint_token
from mispers.config import Settings
from mispers.domain.types import Role
from mispers.security.audit import AuditRecord, JsonlAuditSink, audit_path
from mispers.security.codec import encrypting
from mispers.security.keyring import open_ring
from tests.security.test_codec import NAME, POSTCODE, reported_data

UI = "http://localhost:8233"


class Harness:
    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self.http = http
        self.converter = encrypting(pydantic_data_converter, open_ring(settings))

    def token(self, role: Role, subject: str = "insp-lowe") -> str:
        return mint_token(load_secret(self.settings), role, subject)

    def auth(self, role: Role, subject: str = "insp-lowe") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, subject)}"}

    async def encrypted_body(self) -> dict[str, Any]:
        payloads = await self.converter.encode([reported_data(), {"episode_id": "EP-42"}])
        return json_format.MessageToDict(Payloads(payloads=payloads))

    def audit(self) -> list[AuditRecord]:
        return list(JsonlAuditSink(audit_path(self.settings)).read())


@pytest.fixture
async def h(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
    for var in ("MISPERS_KEYS", "MISPERS_JWT_SECRET", "MISPERS_CODEC_CORS_ORIGIN"):
        monkeypatch.delenv(var, raising=False)
    settings = Settings(data_dir=tmp_path)
    open_ring(settings)  # the embedded default's ring, as `mispers dev` would create it
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        yield Harness(settings, http)


async def test_decode_needs_a_supervisor_or_auditor(h: Harness) -> None:
    body = await h.encrypted_body()
    assert (await h.http.post("/codec/decode", json=body)).status_code == 401
    for role in (Role.OFFICER, Role.SYSTEM):
        answer = await h.http.post("/codec/decode", json=body, headers=h.auth(role))
        assert answer.status_code == 403, role
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert NAME not in answer.text
    # Refused calls decode nothing, and each refusal is on the record.
    refusals = h.audit()
    assert [r.action for r in refusals] == ["access_refused"] * 3
    assert [r.detail["status"] for r in refusals] == [401, 403, 403]
    assert [r.who.role for r in refusals] == ["none", "officer", "system"]


@pytest.mark.parametrize("role", [Role.AUDITOR, Role.SUPERVISOR])
async def test_right_role_gets_decoded_payloads_and_the_decode_is_audited(
    h: Harness, role: Role
) -> None:
    body = await h.encrypted_body()
    assert NAME not in str(body)
    answer = await h.http.post(
        "/codec/decode",
        json=body,
        headers={**h.auth(role, "auditor-kim"), "X-Namespace": "default"},
    )
    assert answer.status_code == 200, answer.text
    decoded = json_format.ParseDict(answer.json(), Payloads()).payloads
    [child_data, refs] = await pydantic_data_converter.decode(
        decoded, [type(reported_data()), dict]
    )
    assert child_data == reported_data()
    assert refs == {"episode_id": "EP-42"}
    assert answer.headers["cache-control"] == "no-store"

    [record] = h.audit()
    assert record.action == "decode_payloads"
    assert (record.who.subject, record.who.role) == ("auditor-kim", role.value)
    assert record.target.child_ref == "C-1001"
    assert record.target.episode_id == "EP-42"
    assert record.from_ == "10.1.2.3"
    assert record.detail["payloads"] == 2
    assert record.detail["namespace"] == "default"
    assert record.detail["key_ids"] == [h.converter.payload_codec.ring.active.id]  # type: ignore[union-attr]
    assert NAME not in record.to_json() and POSTCODE not in record.to_json()


async def test_encode_is_for_supervisors_and_round_trips(h: Harness) -> None:
    plain = json_format.MessageToDict(
        Payloads(payloads=pydantic_data_converter.payload_converter.to_payloads([{"x": 1}]))
    )
    assert (
        await h.http.post("/codec/encode", json=plain, headers=h.auth(Role.AUDITOR))
    ).status_code == 403
    answer = await h.http.post("/codec/encode", json=plain, headers=h.auth(Role.SUPERVISOR))
    assert answer.status_code == 200, answer.text
    encoded = json_format.ParseDict(answer.json(), Payloads()).payloads
    assert encoded[0].metadata["encoding"] == b"binary/encrypted"
    assert await h.converter.decode(encoded, [dict]) == [{"x": 1}]
    assert [r.action for r in h.audit()] == ["access_refused", "encode_payloads"]


async def test_cli_namespace_template_path(h: Harness) -> None:
    body = await h.encrypted_body()
    answer = await h.http.post("/codec/default/decode", json=body, headers=h.auth(Role.AUDITOR))
    assert answer.status_code == 200
    assert h.audit()[0].detail["namespace"] == "default"


async def test_cors_is_limited_to_the_ui_origin(h: Harness) -> None:
    preflight = {
        "Origin": UI,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-namespace",
    }
    ok = await h.http.options("/codec/decode", headers=preflight)
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-origin"] == UI
    assert ok.headers["access-control-allow-credentials"] == "true"
    assert "x-namespace" in ok.headers["access-control-allow-headers"]

    evil = await h.http.options(
        "/codec/decode", headers={**preflight, "Origin": "https://evil.example"}
    )
    assert evil.status_code == 403
    assert "access-control-allow-origin" not in evil.headers

    body = await h.encrypted_body()
    answer = await h.http.post(
        "/codec/decode", json=body, headers={**h.auth(Role.AUDITOR), "Origin": UI}
    )
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == UI
    # A page on another origin gets nothing, not even a decode in the audit.
    refused = await h.http.post(
        "/codec/decode",
        json=body,
        headers={**h.auth(Role.AUDITOR), "Origin": "http://localhost:9999"},
    )
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers
    assert [r.action for r in h.audit()] == ["decode_payloads", "access_refused"]
    # Other API routes stay closed to browsers.
    other = await h.http.options("/v1/episodes", headers=preflight)
    assert "access-control-allow-origin" not in other.headers


async def test_web_ui_cookie_session(h: Harness) -> None:
    form = await h.http.get("/codec/session")
    assert form.status_code == 200 and "<form" in form.text

    refused = await h.http.post("/codec/session", data={"token": h.token(Role.OFFICER)})
    assert refused.status_code == 403
    assert "set-cookie" not in refused.headers

    signed_in = await h.http.post("/codec/session", data={"token": h.token(Role.AUDITOR, "aud-1")})
    assert signed_in.status_code == 200
    cookie = signed_in.headers["set-cookie"].lower()
    for attribute in ("httponly", "samesite=strict", "path=/codec", "mispers_codec="):
        assert attribute in cookie
    body = await h.encrypted_body()
    answer = await h.http.post("/codec/decode", json=body, headers={"Origin": UI})
    assert answer.status_code == 200, answer.text
    assert h.audit()[-1].who.subject == "aud-1"


async def test_bad_requests_are_refused_clearly(h: Harness) -> None:
    auth = h.auth(Role.AUDITOR)
    as_text = await h.http.post(
        "/codec/decode", content=b'{"payloads": []}', headers={**auth, "Content-Type": "text/plain"}
    )
    assert as_text.status_code == 415
    bads: list[Any] = [{"payloads": [{"data": 5}]}, {"payload": []}, [1, 2], {"payloads": "x"}]
    for bad in bads:
        malformed = await h.http.post("/codec/decode", json=bad, headers=auth)
        assert malformed.status_code == 400, bad
    empty = await h.http.post("/codec/decode", json={"payloads": []}, headers=auth)
    assert empty.status_code == 200 and empty.json() == {"payloads": []}

    body = await h.encrypted_body()
    body["payloads"][0]["metadata"]["encryption-key-id"] = "azEtZ29uZQ=="  # "k1-gone"
    unknown = await h.http.post("/codec/decode", json=body, headers=auth)
    assert unknown.status_code == 422
    assert "k1-gone" in unknown.json()["detail"]
    assert NAME not in unknown.text


async def test_an_unusable_ring_answers_503_and_the_api_still_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MISPERS_KEYS", str(tmp_path / "not-mounted.json"))
    settings = Settings(data_dir=tmp_path / "d")
    app = create_app(settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api"
    ) as http:
        token = mint_token(load_secret(settings), Role.AUDITOR, "a")
        answer = await http.post(
            "/codec/decode", json={"payloads": []}, headers={"Authorization": f"Bearer {token}"}
        )
    assert answer.status_code == 503
    assert "MISPERS_KEYS" in answer.json()["detail"]
