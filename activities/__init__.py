"""All I/O lives here: alert delivery, the child record, the locations register."""
