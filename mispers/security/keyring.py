"""The key ring: the AES-256 keys that encrypt every payload Mispers hands to Temporal.

A ring is a small JSON file holding several keys by id. The newest key encrypts; every key in
the ring decrypts, so rotating (adding a key) never strands an old history. Losing the ring
loses the histories' contents, which is the point of encrypting them: back it up with the same
care as the data.

Where the ring lives:
- `MISPERS_KEYS=/path/ring.json` (e.g. a Kubernetes secret mounted read-only): used as is and
  never created, so a mis-mounted secret fails loudly instead of quietly minting a key nobody
  else has.
- otherwise `$MISPERS_DATA_DIR/keys.json`. It is created on first use only for the embedded
  default (no `MISPERS_TEMPORAL_ADDRESS`), where the data directory *is* the whole system and
  every process sharing it (dev, worker, API, CLI) sees the same file. Against an external
  cluster each replica has its own data directory, so creating a ring there would split the
  service into replicas that cannot read each other's payloads: it is refused with a message
  pointing at `mispers keys init`.

The file must be readable by its owner only (mode 0600 or 0400): a ring readable by group or
others is refused, not silently tightened, because it may already have been copied.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import secrets
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mispers.config import Settings

KEYS_VAR = "MISPERS_KEYS"
RING_FILENAME = "keys.json"
FORMAT = "mispers-keyring/1"
KEY_BYTES = 32  # AES-256
KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class KeyRingError(Exception):
    """The ring cannot be used; the message names the file and what to do about it."""


@dataclass(frozen=True)
class Key:
    id: str
    created_at: dt.datetime
    secret: bytes = field(repr=False)

    @property
    def fingerprint(self) -> str:
        """Lets two operators check they hold the same key without showing it."""
        return hashlib.sha256(b"mispers-key-fingerprint\0" + self.secret).hexdigest()[:16]


@dataclass(frozen=True)
class _Stamp:
    """What identifies one version of the ring file, to notice a rotation by another process."""

    ino: int
    mtime_ns: int
    size: int


class KeyRing:
    """Keys by id, newest last. `path` is None for an in-memory ring (tests, benchmarks)."""

    def __init__(self, keys: Sequence[Key], path: Path | None = None) -> None:
        if not keys:
            raise KeyRingError("a key ring needs at least one key")
        self._keys = list(keys)
        self._path = path
        self._stamp = _stamp_of(path) if path is not None else None

    # Reading ------------------------------------------------------------------------------

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def active(self) -> Key:
        """The key new payloads are encrypted with: the newest."""
        return self._keys[-1]

    @property
    def keys(self) -> tuple[Key, ...]:
        return tuple(self._keys)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(k.id for k in self._keys)

    def get(self, key_id: str) -> Key | None:
        for key in reversed(self._keys):
            if key.id == key_id:
                return key
        return None

    def reload_if_changed(self) -> bool:
        """Pick up keys added by `mispers keys rotate` in another process (or an updated
        mounted secret) without a restart. Called when a payload names a key we lack, so a
        worker never fails a workflow task merely because it started before the rotation.
        Keys already loaded are kept: a history being decoded must not lose its key."""
        if self._path is None:
            return False
        try:
            stamp = _stamp_of(self._path)
        except OSError:
            return False
        if stamp == self._stamp:
            return False
        fresh = _read_ring(self._path)
        known = {k.id for k in self._keys}
        self._keys.extend(k for k in fresh if k.id not in known)
        # The file's newest key becomes active for encoding too.
        newest = fresh[-1]
        self._keys = [k for k in self._keys if k.id != newest.id] + [newest]
        self._stamp = stamp
        return True

    # Building -----------------------------------------------------------------------------

    @classmethod
    def ephemeral(cls, count: int = 1) -> KeyRing:
        """An in-memory ring: for tests and benchmarks only, never for data that must last."""
        ring = cls([_new_key([])])
        for _ in range(count - 1):
            ring.rotate()
        return ring

    @classmethod
    def load(cls, path: Path) -> KeyRing:
        return cls(_read_ring(path), path)

    @classmethod
    def create(cls, path: Path) -> KeyRing:
        """A new ring with one key. If another process created the file in the meantime (two
        processes of `mispers dev` starting at once), that ring is loaded instead: the file is
        published with link(2), which never replaces an existing file."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = _new_key([])
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            _write_file(tmp, _dump([key]))
            try:
                os.link(tmp, path)
            except FileExistsError:
                return cls.load(path)
            except OSError as exc:
                raise KeyRingError(f"cannot create key ring {path}: {exc.strerror}") from None
            _fsync_dir(path.parent)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return cls.load(path)

    def rotate(self) -> Key:
        """Add a new key, which becomes the one used to encrypt. Existing keys stay, so every
        payload written before still decodes. The file is re-read under a lock first, so two
        concurrent rotations both land."""
        if self._path is None:
            key = _new_key(self._keys)
            self._keys.append(key)
            return key
        path = self._path
        with _locked(path):
            current = _read_ring(path)
            key = _new_key(current)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
            try:
                _write_file(tmp, _dump([*current, key]))
                os.replace(tmp, path)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise KeyRingError(
                    f"cannot write key ring {path}: {exc.strerror} (a read-only mounted secret? "
                    f"rotate a writable copy with `{KEYS_VAR}=copy.json mispers keys rotate` "
                    "and update the secret)"
                ) from None
            _fsync_dir(path.parent)
        self._keys = [*current, key]
        self._stamp = _stamp_of(path)
        return key


# Where the ring lives ---------------------------------------------------------------------


@dataclass(frozen=True)
class RingLocation:
    path: Path
    explicit: bool  # named by MISPERS_KEYS: never created implicitly


def ring_location(settings: Settings, env: Mapping[str, str] | None = None) -> RingLocation:
    env = os.environ if env is None else env
    raw = (env.get(KEYS_VAR) or "").strip()
    if raw:
        return RingLocation(Path(raw), explicit=True)
    return RingLocation(settings.data_dir / RING_FILENAME, explicit=False)


def may_create_implicitly(settings: Settings, location: RingLocation) -> bool:
    """See the module docstring: only the embedded default mints a ring on first use."""
    return settings.embedded and not location.explicit


def open_ring(
    settings: Settings, env: Mapping[str, str] | None = None, create: bool | None = None
) -> KeyRing:
    """The ring for these settings. `create=None` applies the default rule
    (`may_create_implicitly`); True/False force it (`mispers keys init`, tests)."""
    location = ring_location(settings, env)
    if create is None:
        create = may_create_implicitly(settings, location)
    path = location.path
    if not path.exists():
        if create:
            return KeyRing.create(path)
        if location.explicit:
            raise KeyRingError(
                f"{KEYS_VAR}={str(path)!r}: no such key ring (is the secret mounted?). "
                f"Create one with `{KEYS_VAR}={path} mispers keys init`."
            )
        raise KeyRingError(
            f"no key ring at {path}: payloads cannot be encrypted or read without it. This "
            "service talks to an external Temporal cluster, so the ring is not created "
            f"implicitly: create it once with `mispers keys init`, share it with every replica "
            f"(set {KEYS_VAR} to its path) and back it up."
        )
    return KeyRing.load(path)


# File format ------------------------------------------------------------------------------


def new_key_id(number: int) -> str:
    """`k<number>-<6 hex digits>`, drawn again when the log and audit redaction would take the
    digits for a postcode (`bb66fc` reads as BB6 6FC): operators find keys by the ids that
    the audit and the logs show."""
    from mispers.security.redaction import redact

    while True:
        key_id = f"k{number}-{secrets.token_hex(3)}"
        if redact(key_id) == key_id:
            return key_id


def _new_key(existing: Sequence[Key]) -> Key:
    numbers = [int(m.group(1)) for k in existing if (m := re.match(r"^k(\d+)-", k.id))]
    number = max(numbers, default=len(existing)) + 1
    return Key(
        id=new_key_id(number),
        created_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
        secret=secrets.token_bytes(KEY_BYTES),
    )


def _dump(keys: Sequence[Key]) -> bytes:
    doc = {
        "format": FORMAT,
        "keys": [
            {
                "id": k.id,
                "created_at": k.created_at.isoformat().replace("+00:00", "Z"),
                "key": base64.b64encode(k.secret).decode("ascii"),
            }
            for k in keys
        ],
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def _read_ring(path: Path) -> list[Key]:
    _check_file(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise KeyRingError(f"cannot read key ring {path}: {exc.strerror}") from None
    try:
        doc: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise KeyRingError(f"key ring {path} is corrupt: not valid JSON") from None
    return _parse(path, doc)


def _parse(path: Path, doc: Any) -> list[Key]:
    def corrupt(why: str) -> KeyRingError:
        return KeyRingError(f"key ring {path} is corrupt: {why}")

    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise corrupt(f'expected a JSON object with "format": "{FORMAT}"')
    entries = doc.get("keys")
    if not isinstance(entries, list) or not entries:
        raise corrupt('"keys" must be a non-empty list')
    keys: list[Key] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise corrupt(f"keys[{index}] is not an object")
        key_id = entry.get("id")
        if not isinstance(key_id, str) or not KEY_ID_PATTERN.match(key_id):
            raise corrupt(f"keys[{index}].id must match {KEY_ID_PATTERN.pattern}")
        if key_id in seen:
            raise corrupt(f"key id {key_id!r} appears twice")
        seen.add(key_id)
        try:
            secret = base64.b64decode(str(entry.get("key", "")), validate=True)
        except (binascii.Error, ValueError):
            raise corrupt(f"key {key_id!r}: the key is not base64") from None
        if len(secret) != KEY_BYTES:
            raise corrupt(f"key {key_id!r}: an AES-256 key is {KEY_BYTES} bytes, not {len(secret)}")
        try:
            created = dt.datetime.fromisoformat(str(entry.get("created_at", "")))
        except ValueError:
            raise corrupt(f"key {key_id!r}: created_at is not an ISO 8601 time") from None
        keys.append(Key(id=key_id, created_at=created, secret=secret))
    return keys


def _check_file(path: Path) -> None:
    try:
        st = path.stat()  # follows symlinks: Kubernetes mounts secrets through ..data links
    except FileNotFoundError:
        raise KeyRingError(f"no key ring at {path}") from None
    except OSError as exc:
        raise KeyRingError(f"cannot read key ring {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyRingError(f"key ring {path} is not a regular file")
    loose = stat.S_IMODE(st.st_mode) & 0o077
    if loose:
        raise KeyRingError(
            f"key ring {path} is accessible to group or others (mode "
            f"{stat.S_IMODE(st.st_mode):04o}); it holds the keys to every child's record. "
            f"Restrict it (`chmod 600 {path}`; for a Kubernetes secret set defaultMode: 0400) "
            "and consider rotating if it may have been copied."
        )


def _stamp_of(path: Path) -> _Stamp:
    st = path.stat()
    return _Stamp(st.st_ino, st.st_mtime_ns, st.st_size)


def _write_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock_path = path.with_name(f".{path.name}.lock")
    try:
        fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o600)
    except OSError as exc:
        raise KeyRingError(
            f"cannot lock key ring {path}: {exc.strerror} (a read-only mounted secret? rotate a "
            f"writable copy with `{KEYS_VAR}=copy.json mispers keys rotate` and update the secret)"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
