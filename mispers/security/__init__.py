"""Protection of the children's data (issue 7): payload encryption inside the engine, the key
ring, log redaction, the access audit and the codec server for the Temporal Web UI and CLI.

Kept apart from the domain so that the rules never depend on how data is protected at rest."""
