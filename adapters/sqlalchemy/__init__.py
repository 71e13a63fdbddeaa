"""SQLAlchemy 2 (async) adapters: tables, imperative mappers, repositories, unit of work."""
