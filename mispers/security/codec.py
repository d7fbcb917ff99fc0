"""AES-256-GCM payload codec: what Temporal stores is ciphertext and a key id, nothing else.

Every payload the SDK hands to the codec — workflow and activity inputs and results, signals,
updates, queries, memos, heartbeat details and failures' details — is serialised whole
(metadata included, so even the payload's type hints are hidden) and sealed with the ring's
newest key under a fresh random 96-bit nonce. The key id travels in clear in the metadata so
decoding picks the right key after a rotation; it is also bound into the GCM additional data,
so a ciphertext cannot be relabelled to another key.

Decoding is strict: a payload under an unknown key, one that fails authentication, or one that
is not encrypted at all raises `CodecError` naming the key id. The codec never returns plain
text it did not authenticate: accepting unencrypted payloads would let anyone able to write to
the Temporal frontend (a `temporal workflow signal` without the codec, say) inject unverified
input into an episode. The codec server, which only *displays* history, is lenient about
payloads that were never encrypted (see `decode_for_display`).

With `encode_common_attributes` on the failure converter, failure messages and stack traces are
moved into an encrypted payload too, because exception text routinely quotes the input (a
pydantic error quotes the offending value, which may be a child's name).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

from mispers.config import Settings
from mispers.logs import get_logger
from mispers.security.keyring import Key, KeyRing, KeyRingError, open_ring

_log = get_logger(__name__)

ENCODING = b"binary/encrypted"
KEY_ID_META = "encryption-key-id"
CIPHER_META = "encryption-cipher"
CIPHER = b"AES-256-GCM"
NONCE_BYTES = 12  # 96 bits, the GCM standard nonce
TAG_BYTES = 16
RING_RECHECK_SECONDS = 5.0
_AAD_PREFIX = b"mispers-payload/v1\0"


class CodecError(Exception):
    """A payload that cannot be decoded; never a reason to fall back to plain text."""

    def __init__(self, message: str, key_id: str | None = None) -> None:
        super().__init__(message)
        self.key_id = key_id


class UnknownKeyError(CodecError):
    pass


class PayloadAuthenticationError(CodecError):
    pass


class UnencryptedPayloadError(CodecError):
    pass


class EncryptionCodec(PayloadCodec):
    """Encrypts with the ring's active key; decrypts with whichever key a payload names."""

    def __init__(self, ring: KeyRing) -> None:
        self._ring = ring
        self._ciphers: dict[str, AESGCM] = {}
        self._checked_at = time.monotonic()

    @property
    def ring(self) -> KeyRing:
        return self._ring

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        now = time.monotonic()
        if now - self._checked_at > RING_RECHECK_SECONDS:
            # A rotation by `mispers keys rotate` (or an updated mounted secret) takes effect
            # for encoding within seconds, without a restart; a stat() every few seconds.
            self._checked_at = now
            try:
                self._ring.reload_if_changed()
            except KeyRingError as exc:
                # Encrypting on with a key we hold loses nothing; say why the new one is unused.
                _log.warning("key ring not reloaded", reason=str(exc))
        key = self._ring.active
        cipher = self._cipher(key)
        aad = _aad(key.id)
        out: list[Payload] = []
        for payload in payloads:
            nonce = os.urandom(NONCE_BYTES)
            sealed = cipher.encrypt(nonce, payload.SerializeToString(), aad)
            out.append(
                Payload(
                    metadata={
                        "encoding": ENCODING,
                        KEY_ID_META: key.id.encode("ascii"),
                        CIPHER_META: CIPHER,
                    },
                    data=nonce + sealed,
                )
            )
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decode_one(p) for p in payloads]

    def decode_for_display(self, payloads: Sequence[Payload]) -> list[Payload]:
        """The codec server's decode: payloads that were never encrypted (written by a tool
        without the codec) are shown as they are, since they hold nothing secret to protect;
        encrypted ones are decoded strictly."""
        return [self._decode_one(p) if is_encrypted(p) else p for p in payloads]

    def _decode_one(self, payload: Payload) -> Payload:
        if not is_encrypted(payload):
            encoding = payload.metadata.get("encoding", b"").decode("utf-8", "replace")
            raise UnencryptedPayloadError(
                f"refusing an unencrypted payload (encoding {encoding!r}): every Mispers payload "
                "is encrypted, so this one was written without the Mispers codec (e.g. a "
                "`temporal` command without --codec-endpoint) and cannot be trusted"
            )
        key_id = payload.metadata.get(KEY_ID_META, b"").decode("utf-8", "replace")
        key = self._ring.get(key_id)
        if key is None and self._ring.reload_if_changed():
            key = self._ring.get(key_id)
        if key is None:
            where = f" ({self._ring.path})" if self._ring.path else ""
            raise UnknownKeyError(
                f"payload encrypted with key id {key_id!r}, which is not in the key ring{where}; "
                f"the ring holds {', '.join(self._ring.ids)}. Restore the ring that holds "
                f"{key_id!r} (keys are never removed by rotation).",
                key_id,
            )
        data = payload.data
        if len(data) < NONCE_BYTES + TAG_BYTES:
            raise PayloadAuthenticationError(
                f"payload under key id {key_id!r} is truncated ({len(data)} bytes)", key_id
            )
        try:
            plain = self._cipher(key).decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], _aad(key_id))
        except InvalidTag:
            raise PayloadAuthenticationError(
                f"payload under key id {key_id!r} failed authentication: it was altered, or the "
                f"ring's key {key_id!r} is not the key it was written with",
                key_id,
            ) from None
        decoded = Payload()
        decoded.ParseFromString(plain)
        return decoded

    def _cipher(self, key: Key) -> AESGCM:
        cipher = self._ciphers.get(key.id)
        if cipher is None:
            cipher = self._ciphers[key.id] = AESGCM(key.secret)
        return cipher


def is_encrypted(payload: Payload) -> bool:
    return payload.metadata.get("encoding") == ENCODING


def key_id_of(payload: Payload) -> str | None:
    raw = payload.metadata.get(KEY_ID_META)
    return raw.decode("utf-8", "replace") if raw is not None and is_encrypted(payload) else None


def _aad(key_id: str) -> bytes:
    return _AAD_PREFIX + key_id.encode("ascii")


def encrypting(converter: DataConverter, ring: KeyRing) -> DataConverter:
    """`converter` with the encryption codec and a failure converter that moves messages and
    stack traces into (encrypted) encoded attributes."""
    return dataclasses.replace(
        converter,
        payload_codec=EncryptionCodec(ring),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def encrypted_data_converter(
    settings: Settings, env: Mapping[str, str] | None = None
) -> DataConverter:
    """The production converter: pydantic payloads, encrypted with the settings' key ring."""
    from temporalio.contrib.pydantic import pydantic_data_converter

    return encrypting(pydantic_data_converter, open_ring(settings, env))
