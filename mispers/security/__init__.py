"""Protection of the children's data: payload encryption inside the engine, the key ring, log
redaction and the access audit. The codec server that lets the Temporal Web UI and CLI decode
payloads is an HTTP surface and lives with the API (mispers.api.codec_server), which uses these.

Kept apart from the domain so that the rules never depend on how data is protected at rest, and
from the API so that the worker can encrypt without importing any HTTP code."""
