"""In-memory adapters: the same behaviour as the SQL ones, for fast tests (ours and yours)."""

from adapters.memory.unit_of_work import InMemoryDatabase, InMemoryUnitOfWork

__all__ = ["InMemoryDatabase", "InMemoryUnitOfWork"]
