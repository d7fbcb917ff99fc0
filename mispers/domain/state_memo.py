"""The episode's state as it travels in its memo: compressed JSON, so a detail read is one
server call (no worker, no replay) and a long episode stays far below the server's memo limits.

The workflow writes it (workflows/episode.py) and the readers decode it
(mispers.engine.client.get_episode_state); the codec seals the memo payload like any other."""

from __future__ import annotations

import base64
import hashlib
import zlib

from mispers.domain.state import EpisodeState

STATE_MEMO = "state"
# Temporal refuses a memo over `limit.memoSize.error` (2 MiB by default) by failing the
# workflow, and warns over `limit.memoSize.warn` (2 KiB). A state whose packed form is larger
# than this is not kept in the memo (the readers then ask the workflow): far below the error
# limit even beside the alerts memo, and a history event of at most this size per change.
MEMO_BUDGET_BYTES = 64 * 1024
# The whole memo (the state and the `alerts` list of at most ~55 entries) stays below this.
MEMO_WARN_BYTES = 96 * 1024


def state_json(state: EpisodeState) -> bytes:
    """The same JSON the `state` query answers with (excluded fields stay out)."""
    return state.model_dump_json().encode("utf-8")


def fingerprint(raw_json: bytes) -> bytes:
    """What a workflow keeps to tell a changed state (16 bytes, not the whole JSON, per cached
    episode)."""
    return hashlib.blake2b(raw_json, digest_size=16).digest()


def pack(raw_json: bytes) -> str | None:
    """None when the packed state would exceed the budget."""
    packed = base64.b64encode(zlib.compress(raw_json, 6)).decode("ascii")
    return packed if len(packed) <= MEMO_BUDGET_BYTES else None


def unpack(packed: str) -> EpisodeState:
    return EpisodeState.model_validate_json(zlib.decompress(base64.b64decode(packed)))
