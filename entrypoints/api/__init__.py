"""The HTTP API: one entrypoint adapter among others (the CLI, in-process callers)."""
