"""The hot statements, compiled once per dialect and run on the driver's own connection.

Why: an ORM `session.get()` or a Core `execute()` pays for caching, events and result machinery
on every call; the same SELECT run on the driver's connection costs a fraction of it (the
figures are in bench/RESULTS.md). The caller's account, a bot, a conversation, a page of
messages and the hot write of a chat run on nearly every request, so they are compiled here
(and the hot write's in conversation_log.py) — nowhere else — as SQLAlchemy Core statements,
with every value through its column type's processors, so the entities are the ones the ORM
would build.

- `compiled.py`: compiling a statement, its arguments, building entities from rows (the few
  non-public SQLAlchemy calls this needs, each in one function).
- `drivers.py`: asyncpg and aiosqlite, the two drivers we ship.
- `statements.py`: where a unit of work runs them — outside any transaction (read-only units)
  or inside its session's transaction (writing units).
- `reads.py`: the named reads.
"""
