"""The payload codec: what leaves the process is ciphertext that only the ring can open."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError

from mispers.config import Settings
from mispers.domain.events import Child, EpisodeReportedData, Location, ReportedBy
from mispers.domain.types import RiskLevel
from mispers.engine.client import data_converter
from mispers.security import codec as codec_module
from mispers.security.codec import (
    ENCODING,
    KEY_ID_META,
    CodecError,
    EncryptionCodec,
    PayloadAuthenticationError,
    UnencryptedPayloadError,
    UnknownKeyError,
    encrypting,
    key_id_of,
)
from mispers.security.keyring import KeyRing

NAME = "Jessamine Quillfeather"
POSTCODE = "ZZ9 9QQ"


def reported_data() -> EpisodeReportedData:
    return EpisodeReportedData(
        child=Child(
            child_ref="C-1001",
            date_of_birth=dt.date(2011, 4, 17),
            name=NAME,
            looked_after=True,
        ),
        last_seen_at=dt.datetime(2026, 11, 1, 20, 0, tzinfo=dt.UTC),
        last_seen_location=Location(description="the bus shelter by the canal", postcode=POSTCODE),
        initial_risk=RiskLevel.HIGH,
        reported_by=ReportedBy(role="carer"),
        officer_id="PC-7",
        circumstances="left after an argument",
    )


async def test_round_trip_hides_everything_and_restores_the_value() -> None:
    ring = KeyRing.ephemeral()
    converter = encrypting(pydantic_data_converter, ring)
    value = reported_data()

    [payload] = await converter.encode([value])

    assert payload.metadata["encoding"] == ENCODING
    assert payload.metadata[KEY_ID_META] == ring.active.id.encode()
    blob = payload.SerializeToString()
    for secret in (NAME.encode(), POSTCODE.encode(), b"2011-04-17", b"json/plain", b"canal"):
        assert secret not in blob
    [decoded] = await converter.decode([payload], [EpisodeReportedData])
    assert decoded == value


async def test_every_encode_uses_a_fresh_nonce() -> None:
    codec = EncryptionCodec(KeyRing.ephemeral())
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"same"')
    first, second = await codec.encode([plain, plain])
    assert first.data[:12] != second.data[:12]
    assert first.data != second.data
    assert await codec.decode([first, second]) == [plain, plain]


async def test_encode_never_passes_plain_text_through() -> None:
    codec = EncryptionCodec(KeyRing.ephemeral())
    plain = Payload(metadata={"encoding": b"json/plain"}, data=NAME.encode())
    # Even a payload that claims to be encrypted is sealed again, not trusted.
    spoofed = Payload(metadata={"encoding": ENCODING}, data=NAME.encode())
    for out in await codec.encode([plain, spoofed]):
        assert NAME.encode() not in out.SerializeToString()


async def test_tampered_payload_fails_authentication_naming_the_key() -> None:
    ring = KeyRing.ephemeral()
    codec = EncryptionCodec(ring)
    [payload] = await codec.encode([Payload(metadata={"encoding": b"json/plain"}, data=b"{}")])
    data = bytearray(payload.data)
    data[-1] ^= 0x01
    tampered = Payload(metadata=dict(payload.metadata), data=bytes(data))

    with pytest.raises(PayloadAuthenticationError) as info:
        await codec.decode([tampered])
    assert ring.active.id in str(info.value)
    assert info.value.key_id == ring.active.id

    truncated = Payload(metadata=dict(payload.metadata), data=payload.data[:20])
    with pytest.raises(PayloadAuthenticationError):
        await codec.decode([truncated])


async def test_relabelling_a_payload_to_another_key_fails_authentication() -> None:
    ring = KeyRing.ephemeral(count=2)
    codec = EncryptionCodec(ring)
    [payload] = await codec.encode([Payload(metadata={"encoding": b"json/plain"}, data=b"1")])
    other = ring.keys[0].id
    assert key_id_of(payload) != other
    relabelled = Payload(
        metadata={**dict(payload.metadata), KEY_ID_META: other.encode()}, data=payload.data
    )
    with pytest.raises(PayloadAuthenticationError, match=other):
        await codec.decode([relabelled])


async def test_unknown_key_id_is_a_clear_error_not_garbage() -> None:
    writer = EncryptionCodec(KeyRing.ephemeral())
    reader = EncryptionCodec(KeyRing.ephemeral())
    [payload] = await writer.encode([Payload(metadata={"encoding": b"json/plain"}, data=b"1")])
    with pytest.raises(UnknownKeyError) as info:
        await reader.decode([payload])
    assert writer.ring.active.id in str(info.value)
    assert "not in the key ring" in str(info.value)


async def test_unencrypted_payloads_are_refused_on_decode_but_shown_by_the_display_path() -> None:
    codec = EncryptionCodec(KeyRing.ephemeral())
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"hello"')
    with pytest.raises(UnencryptedPayloadError, match="json/plain"):
        await codec.decode([plain])
    [encrypted] = await codec.encode([plain])
    assert codec.decode_for_display([plain, encrypted]) == [plain, plain]
    # the last byte flipped (set to a constant, it is unchanged one time in 256)
    tampered = encrypted.data[:-1] + bytes([encrypted.data[-1] ^ 0x01])
    broken = Payload(metadata=dict(encrypted.metadata), data=tampered)
    with pytest.raises(CodecError):
        codec.decode_for_display([broken])


async def test_failure_messages_and_details_are_encrypted() -> None:
    converter = encrypting(pydantic_data_converter, KeyRing.ephemeral())
    error = ApplicationError(f"no such child {NAME}", {"postcode": POSTCODE}, type="Refused")
    failure = Failure()
    await converter.encode_failure(error, failure)

    blob = failure.SerializeToString()
    assert NAME.encode() not in blob
    assert POSTCODE.encode() not in blob
    assert failure.message == "Encoded failure"
    assert failure.encoded_attributes.metadata["encoding"] == ENCODING

    decoded = await converter.decode_failure(failure)
    assert isinstance(decoded, ApplicationError)
    assert decoded.message == f"no such child {NAME}"
    assert decoded.details == ({"postcode": POSTCODE},)


async def test_rotation_new_payloads_use_the_newest_key_and_old_ones_still_decode(
    tmp_path: Path,
) -> None:
    ring = KeyRing.create(tmp_path / "keys.json")
    codec = EncryptionCodec(ring)
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"x"')
    [old] = await codec.encode([plain])
    first = ring.active.id

    new_key = ring.rotate()
    [new] = await codec.encode([plain])

    assert key_id_of(old) == first
    assert key_id_of(new) == new_key.id != first
    assert await codec.decode([old, new]) == [plain, plain]


async def test_a_process_with_an_older_ring_picks_up_a_rotation_from_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "keys.json"
    KeyRing.create(path)
    api_side = EncryptionCodec(KeyRing.load(path))  # started before the rotation
    operator = KeyRing.load(path)
    new_key = operator.rotate()  # `mispers keys rotate` in another process
    writer = EncryptionCodec(KeyRing.load(path))
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"y"')
    [under_new] = await writer.encode([plain])

    # Decoding a payload under a key it lacks makes it re-read the ring instead of failing.
    assert await api_side.decode([under_new]) == [plain]

    # And encoding moves to the new key within RING_RECHECK_SECONDS, without a restart.
    stale = EncryptionCodec(KeyRing.load(path))
    operator.rotate()
    monkeypatch.setattr(codec_module, "RING_RECHECK_SECONDS", 0.0)
    [after] = await stale.encode([plain])
    assert key_id_of(after) == operator.active.id != new_key.id


def test_data_converter_encrypts_with_settings_and_stays_plain_without(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MISPERS_KEYS", raising=False)
    settings = Settings(data_dir=tmp_path)
    converter = data_converter(settings)
    assert isinstance(converter.payload_codec, EncryptionCodec)
    assert converter.failure_converter._encode_common_attributes  # type: ignore[attr-defined]
    assert (tmp_path / "keys.json").exists()  # embedded default: created on first run
    assert data_converter().payload_codec is None
