"""The key ring file: created safely, refused when unsafe, rotated without losing keys."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from mispers.config import Settings
from mispers.security.keyring import KEYS_VAR, KeyRing, KeyRingError, open_ring

EMBEDDED = {"MISPERS_DATA_DIR": "ignored"}  # env without MISPERS_KEYS


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_embedded_default_creates_an_owner_only_ring_on_first_run(tmp_path: Path) -> None:
    old_umask = os.umask(0o000)  # a permissive umask must not loosen the file
    try:
        ring = open_ring(Settings(data_dir=tmp_path / "data"), env=EMBEDDED)
    finally:
        os.umask(old_umask)
    path = tmp_path / "data" / "keys.json"
    assert ring.path == path
    assert mode(path) == 0o600
    doc = json.loads(path.read_text())
    assert doc["format"] == "mispers-keyring/1"
    assert [k["id"] for k in doc["keys"]] == [ring.active.id]
    # The second process (API, CLI) loads the same ring rather than minting another.
    again = open_ring(Settings(data_dir=tmp_path / "data"), env=EMBEDDED)
    assert again.active.secret == ring.active.secret


def test_create_never_replaces_an_existing_ring(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    first = KeyRing.create(path)
    racing = KeyRing.create(path)  # a second `mispers dev` starting at the same moment
    assert racing.ids == first.ids
    assert racing.active.secret == first.active.secret
    assert [p.name for p in tmp_path.iterdir()] == ["keys.json"]  # no temp files left


def test_external_cluster_refuses_to_mint_a_ring(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, temporal_address="temporal.example:7233")
    with pytest.raises(KeyRingError, match="mispers keys init"):
        open_ring(settings, env=EMBEDDED)
    assert not (tmp_path / "keys.json").exists()


def test_a_missing_mounted_ring_is_an_error_naming_the_variable(tmp_path: Path) -> None:
    missing = tmp_path / "secret" / "ring.json"
    with pytest.raises(KeyRingError, match=KEYS_VAR) as info:
        open_ring(Settings(data_dir=tmp_path), env={KEYS_VAR: str(missing)})
    assert str(missing) in str(info.value)
    assert not missing.exists()


def test_mounted_ring_is_used_from_its_path(tmp_path: Path) -> None:
    mounted = KeyRing.create(tmp_path / "secret.json")
    ring = open_ring(Settings(data_dir=tmp_path / "data"), env={KEYS_VAR: str(mounted.path)})
    assert ring.ids == mounted.ids
    assert not (tmp_path / "data" / "keys.json").exists()


@pytest.mark.parametrize("loose", [0o644, 0o640, 0o604, 0o660])
def test_a_ring_readable_by_others_is_refused(tmp_path: Path, loose: int) -> None:
    path = KeyRing.create(tmp_path / "keys.json").path
    assert path is not None
    path.chmod(loose)
    with pytest.raises(KeyRingError, match="chmod 600") as info:
        KeyRing.load(path)
    assert f"{loose:04o}" in str(info.value)


def test_a_read_only_owner_ring_is_accepted(tmp_path: Path) -> None:
    path = KeyRing.create(tmp_path / "keys.json").path
    assert path is not None
    path.chmod(0o400)  # Kubernetes secret with defaultMode: 0400
    assert KeyRing.load(path).active


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"format": "other", "keys": []}', "format"),
        (b'{"format": "mispers-keyring/1", "keys": []}', "non-empty"),
        (
            b'{"format": "mispers-keyring/1", "keys": [{"id": "k1", "created_at": '
            b'"2026-01-01T00:00:00Z", "key": "c2hvcnQ="}]}',
            "32 bytes",
        ),
        (
            b'{"format": "mispers-keyring/1", "keys": [{"id": "k 1", "created_at": '
            b'"2026-01-01T00:00:00Z", "key": "c2hvcnQ="}]}',
            "id must match",
        ),
        (
            b'{"format": "mispers-keyring/1", "keys": [{"id": "k1", "created_at": '
            b'"2026-01-01T00:00:00Z", "key": "!!"}]}',
            "not base64",
        ),
    ],
)
def test_a_corrupt_ring_is_a_clear_error(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "keys.json"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(KeyRingError, match="corrupt") as info:
        KeyRing.load(path)
    assert why in str(info.value)


def test_rotate_adds_a_newest_key_and_keeps_the_old_ones(tmp_path: Path) -> None:
    ring = KeyRing.create(tmp_path / "keys.json")
    first = ring.active
    second = ring.rotate()
    third = ring.rotate()

    assert ring.ids == (first.id, second.id, third.id)
    assert ring.active == third
    assert first.id.startswith("k1-") and second.id.startswith("k2-") and third.id.startswith("k3-")
    reloaded = KeyRing.load(tmp_path / "keys.json")
    assert reloaded.ids == ring.ids
    assert reloaded.get(first.id) == first
    assert mode(tmp_path / "keys.json") == 0o600


def test_two_rotations_from_stale_copies_both_land(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    KeyRing.create(path)
    one, two = KeyRing.load(path), KeyRing.load(path)
    a = one.rotate()
    b = two.rotate()  # re-reads under the lock, so `a` is kept
    assert set(KeyRing.load(path).ids) >= {a.id, b.id}
    assert KeyRing.load(path).active.id == b.id


def test_keys_are_never_shown_in_reprs(tmp_path: Path) -> None:
    ring = KeyRing.create(tmp_path / "keys.json")
    assert ring.active.secret.hex() not in repr(ring.active)
    assert len(ring.active.fingerprint) == 16


def test_a_key_id_never_reads_as_a_postcode_to_the_redaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The audit of a decode names the key ids; one whose digits look like a postcode would be
    logged as `[redacted]`. Such a draw is drawn again."""
    from mispers.security import keyring as keyring_module
    from mispers.security.redaction import redact

    assert redact("k1-bb66fc") != "k1-bb66fc"  # the shape that was once redacted
    draws = iter(["bb66fc", "0a1b2c"])
    monkeypatch.setattr("mispers.security.keyring.secrets.token_hex", lambda _n: next(draws))
    assert keyring_module.new_key_id(1) == "k1-0a1b2c"
