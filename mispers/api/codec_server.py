"""The codec server: lets the Temporal Web UI and CLI show decoded payloads to the people allowed
to see them, and records each time they do.

Temporal's codec-server protocol: `POST {endpoint}/decode` and `POST {endpoint}/encode` with a
proto3-JSON body `{"payloads": [{"metadata": {"encoding": "<base64>"}, "data": "<base64>"}]}`,
answered in the same shape. Mounted under `/codec`, so the endpoint is
`http://HOST:PORT/codec` (the CLI's `{namespace}` templating, `/codec/{namespace}/decode`,
works too):

    temporal workflow show -w episode-EP-1 --codec-endpoint http://127.0.0.1:8000/codec \\
        --codec-auth "Bearer $(mispers token --role supervisor --subject insp-1)"

Who may: decoding needs the `supervisor` or `auditor` role; encoding (which mints ciphertext
the worker will trust, e.g. for a signal sent from the UI) needs `supervisor`. Every call is
recorded in the access audit with the episodes and children the decoded payloads concern, so
`mispers audit --child REF` shows Web UI and CLI reads as well as API reads.

The Web UI cannot send our bearer header; it can send cookies ("Include cross-origin
credentials" in its codec settings). `GET /codec/session` is a one-field form where a
supervisor pastes a token; it comes back as an HttpOnly, SameSite=Strict cookie scoped to
`/codec` and is checked on every call exactly like the header (expiry included).

Browser access is limited to the configured UI origin(s), `MISPERS_CODEC_CORS_ORIGIN`
(comma-separated; default the embedded Web UI on localhost and 127.0.0.1). The CORS headers
are set here, on these routes only: the rest of the API stays closed to browsers. A request
from any other origin is refused outright, and a JSON content type is required, so a page on
another origin cannot make a cookie-bearing "simple" request either.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from mispers.api.auth import bearer_token, verify_token
from mispers.api.context import get_context
from mispers.api.problems import ProblemError, forbidden, problem, problem_response, unauthorized
from mispers.config import Settings
from mispers.domain.events import REF_PATTERN, Actor
from mispers.domain.types import Role
from mispers.logs import get_logger
from mispers.security.audit import AuditRecord, AuditSink, app_audit_sink
from mispers.security.codec import CodecError, EncryptionCodec, key_id_of
from mispers.security.keyring import KeyRing, KeyRingError, open_ring

CORS_VAR = "MISPERS_CODEC_CORS_ORIGIN"
COOKIE = "mispers_codec"
PREFIX = "/codec"
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_PAYLOADS = 5000
DECODE_ROLES = frozenset({Role.SUPERVISOR, Role.AUDITOR})
ENCODE_ROLES = frozenset({Role.SUPERVISOR})

_REF = re.compile(REF_PATTERN)
log = get_logger("mispers.codec_server")


def allowed_origins(settings: Settings, env: Mapping[str, str] | None = None) -> frozenset[str]:
    env = os.environ if env is None else env
    raw = (env.get(CORS_VAR) or "").strip()
    if raw:
        return frozenset(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    port = settings.embedded_temporal_port + 1000
    return frozenset({f"http://localhost:{port}", f"http://127.0.0.1:{port}"})


class CodecServer:
    """The codec and the audit sink, resolved on first use: mounting the routes never touches
    the key ring, so an API that cannot open it still starts and answers everything else
    (the codec routes answer 503 naming the ring's problem)."""

    def __init__(
        self,
        settings: Settings,
        ring: KeyRing | None,
        audit: AuditSink | None,
        origins: frozenset[str],
    ) -> None:
        self.settings = settings
        self.origins = origins
        self._codec = EncryptionCodec(ring) if ring is not None else None
        self._audit = audit

    def codec(self) -> EncryptionCodec:
        if self._codec is None:
            try:
                self._codec = EncryptionCodec(open_ring(self.settings))
            except KeyRingError as exc:
                raise problem(
                    503, "codec-unavailable", "The key ring cannot be used", str(exc)
                ) from None
        return self._codec

    def audit(self, request: Request) -> AuditSink:
        if self._audit is None:
            self._audit = app_audit_sink(request.app, self.settings)
        return self._audit


def codec_router(
    settings: Settings,
    *,
    ring: KeyRing | None = None,
    audit: AuditSink | None = None,
    origins: Iterable[str] | None = None,
) -> APIRouter:
    """The `/codec` routes, for `app.include_router(codec_router(settings))` in the API's app
    factory. The ring defaults to the settings' own (the API's Temporal client uses the same)
    and the audit sink to the app's (`install_audit`)."""
    server = CodecServer(
        settings,
        ring,
        audit,
        frozenset(origins) if origins is not None else allowed_origins(settings),
    )
    router = APIRouter(prefix=PREFIX, tags=["codec"])

    async def decode(request: Request) -> Response:
        return await _handle(server, request, "decode", None)

    async def encode(request: Request) -> Response:
        return await _handle(server, request, "encode", None)

    async def decode_ns(request: Request, namespace: str) -> Response:
        return await _handle(server, request, "decode", namespace)

    async def encode_ns(request: Request, namespace: str) -> Response:
        return await _handle(server, request, "encode", namespace)

    async def preflight(request: Request) -> Response:
        origin = request.headers.get("origin")
        if origin is None or origin.rstrip("/") not in server.origins:
            return Response(status_code=403)
        headers = _cors_headers(server, origin)
        headers.update(
            {
                "Access-Control-Allow-Methods": "POST, OPTIONS",
                "Access-Control-Allow-Headers": "authorization, content-type, x-namespace",
                "Access-Control-Max-Age": "600",
            }
        )
        return Response(status_code=204, headers=headers)

    async def session_form() -> HTMLResponse:
        return HTMLResponse(_FORM, headers={"Cache-Control": "no-store"})

    async def session(request: Request) -> Response:
        return await _session(server, request)

    # Temporal's protocol, not Mispers' contract: kept out of the OpenAPI document.
    router.add_api_route("/decode", decode, methods=["POST"], include_in_schema=False)
    router.add_api_route("/encode", encode, methods=["POST"], include_in_schema=False)
    router.add_api_route(
        "/{namespace}/decode", decode_ns, methods=["POST"], include_in_schema=False
    )
    router.add_api_route(
        "/{namespace}/encode", encode_ns, methods=["POST"], include_in_schema=False
    )
    for path in ("/decode", "/encode", "/{namespace}/decode", "/{namespace}/encode"):
        router.add_api_route(path, preflight, methods=["OPTIONS"], include_in_schema=False)
    router.add_api_route("/session", session_form, methods=["GET"], include_in_schema=False)
    router.add_api_route("/session", session, methods=["POST"], include_in_schema=False)
    return router


async def _handle(
    server: CodecServer,
    request: Request,
    op: Literal["decode", "encode"],
    namespace: str | None,
) -> Response:
    origin = request.headers.get("origin")
    cors = _cors_headers(server, origin) if origin else {}
    try:
        if origin is not None and origin.rstrip("/") not in server.origins:
            raise forbidden(f"origin {origin[:100]!r} may not use the codec server")
        actor = _actor(request)
        roles = DECODE_ROLES if op == "decode" else ENCODE_ROLES
        if actor.role not in roles:
            allowed = ", ".join(sorted(r.value for r in roles))
            raise forbidden(
                f"role '{actor.role.value}' may not {op} payloads; allowed: {allowed}",
                required_role=Role.SUPERVISOR.value,
            )
        payloads = await _payloads(request)
        if op == "decode":
            key_ids = sorted({k for p in payloads if (k := key_id_of(p))})
            try:
                result = server.codec().decode_for_display(payloads)
            except CodecError as exc:
                raise problem(
                    422, "codec-error", "The payloads cannot be decoded", str(exc)
                ) from None
            await _audit_decode(server, request, actor, namespace, result, key_ids)
        else:
            result = await server.codec().encode(payloads)
            await server.audit(request).record(
                AuditRecord.now(
                    subject=actor.subject,
                    role=actor.role.value,
                    action="encode_payloads",
                    client=_client(request),
                    detail={"namespace": _namespace(request, namespace), "payloads": len(result)},
                )
            )
    except ProblemError as err:
        answer = problem_response(err)
        answer.headers.update(cors)
        return answer
    body = json_format.MessageToDict(Payloads(payloads=result))
    body.setdefault("payloads", [])
    return JSONResponse(body, headers={**cors, "Cache-Control": "no-store"})


def _actor(request: Request) -> Actor:
    secret = get_context(request).secret
    header = request.headers.get("authorization")
    if header:
        return verify_token(secret, bearer_token(header))
    cookie = request.cookies.get(COOKIE)
    if cookie:
        return verify_token(secret, cookie)
    raise unauthorized(
        "send 'Authorization: Bearer <token>' (CLI: --codec-auth) or sign in at "
        f"{PREFIX}/session for the Web UI"
    )


async def _payloads(request: Request) -> list[Payload]:
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media != "application/json":
        raise problem(
            415, "unsupported-media-type", "Unsupported content type", "send application/json"
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise problem(
                413, "too-large", "Request body too large", f"the limit is {MAX_BODY_BYTES} bytes"
            )
    try:
        document = json.loads(body)
        parsed = json_format.ParseDict(document, Payloads(), ignore_unknown_fields=False)
    except (ValueError, json_format.ParseError, TypeError, AttributeError):
        raise problem(
            400,
            "malformed",
            "Malformed request body",
            'expected {"payloads": [{"metadata": {...base64}, "data": "<base64>"}]}',
        ) from None
    if len(parsed.payloads) > MAX_PAYLOADS:
        raise problem(413, "too-large", "Too many payloads", f"at most {MAX_PAYLOADS} per call")
    return list(parsed.payloads)


async def _audit_decode(
    server: CodecServer,
    request: Request,
    actor: Actor,
    namespace: str | None,
    decoded: list[Payload],
    key_ids: list[str],
) -> None:
    """One record per child the decoded payloads concern (one with no child if none is named),
    each naming the episodes seen, so a decode shows up under `mispers audit --child`."""
    episodes, children = _refs(decoded)
    detail: dict[str, Any] = {
        "namespace": _namespace(request, namespace),
        "payloads": len(decoded),
        "key_ids": key_ids,
        "episode_ids": sorted(episodes)[:50],
    }
    episode = next(iter(episodes)) if len(episodes) == 1 else None
    targets: list[str | None] = [*sorted(children)[:50]] or [None]
    for child in targets:
        await server.audit(request).record(
            AuditRecord.now(
                subject=actor.subject,
                role=actor.role.value,
                action="decode_payloads",
                episode_id=episode,
                child_ref=child,
                client=_client(request),
                detail=detail,
            )
        )


def _refs(payloads: Iterable[Payload]) -> tuple[set[str], set[str]]:
    """Episode ids and child refs named in decoded JSON payloads (references only)."""
    episodes: set[str] = set()
    children: set[str] = set()

    def walk(node: Any, depth: int) -> None:
        if depth > 12:
            return
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, str) and _REF.match(value):
                    if key == "child_ref":
                        children.add(value)
                    elif key == "episode_id":
                        episodes.add(value)
            kind = node.get("type")
            subject = node.get("subject")
            is_event = isinstance(kind, str) and kind.startswith("mispers.")
            if is_event and isinstance(subject, str) and _REF.match(subject):
                episodes.add(subject)  # a CloudEvent's subject is its episode id
            for value in node.values():
                walk(value, depth + 1)
        elif isinstance(node, list):
            for value in node:
                walk(value, depth + 1)

    for payload in payloads:
        if payload.metadata.get("encoding") != b"json/plain":
            continue
        try:
            walk(json.loads(payload.data), 0)
        except ValueError:
            continue
    return episodes, children


async def _session(server: CodecServer, request: Request) -> Response:
    """Turn a pasted token into the codec cookie, after checking it as a decode would."""
    token: str | None = None
    header = request.headers.get("authorization")
    if header:
        token = bearer_token(header)
    else:
        body = (await request.body())[:16384].decode("utf-8", "replace")
        token = (urllib.parse.parse_qs(body).get("token") or [""])[0].strip() or None
    if not token:
        raise unauthorized("paste a token from `mispers token --role supervisor --subject ID`")
    actor = verify_token(get_context(request).secret, token)
    if actor.role not in DECODE_ROLES:
        raise forbidden(
            f"role '{actor.role.value}' may not decode payloads; allowed: auditor, supervisor",
            required_role=Role.SUPERVISOR.value,
        )
    answer = HTMLResponse(
        "<!doctype html><title>Mispers codec</title><p>Signed in to the codec server as "
        f"{_html(actor.subject)} ({actor.role.value}). Return to the Temporal Web UI and turn on "
        "“Include cross-origin credentials” in its codec server settings.</p>",
        headers={"Cache-Control": "no-store"},
    )
    answer.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=PREFIX,
    )
    log.info("codec session opened", subject=actor.subject, role=actor.role.value)
    return answer


def _cors_headers(server: CodecServer, origin: str | None) -> dict[str, str]:
    if origin is None or origin.rstrip("/") not in server.origins:
        return {"Vary": "Origin"}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


def _namespace(request: Request, namespace: str | None) -> str:
    return (namespace or request.headers.get("x-namespace") or "")[:200]


def _html(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


_FORM = """<!doctype html>
<title>Mispers codec server: sign in</title>
<h1>Decode payloads in the Temporal Web UI</h1>
<p>Paste a supervisor or auditor token (<code>mispers token --role auditor --subject ID</code>).
Every decode is recorded in the access audit under your name.</p>
<form method="post" action="session">
<input name="token" type="password" size="60" autocomplete="off" required>
<button type="submit">Sign in</button>
</form>
"""
