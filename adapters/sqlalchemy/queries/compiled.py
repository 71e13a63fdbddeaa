"""A Core statement compiled once for one dialect, and entities built from its rows.

The values go through the column types' bind and result processors exactly as SQLAlchemy would
send and return them (UTC datetimes, enums, UUIDs, JSON), so an entity built here equals the
one the ORM loads, types included (the contract suite checks it field by field).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import instrumentation
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter

Entity = TypeVar("Entity")
Row = Sequence[Any]
_REQUIRED = object()


def positional_parameters(compiled: SQLCompiler) -> list[tuple[str, BindParameter[Any]]]:
    """The bound parameters of `compiled` with their names, in the order a positional
    paramstyle sends them. Not public API (`SQLCompiler.positiontup`, `.binds`): pinned by
    tests/integration/test_sqlalchemy_queries.py."""
    return [(name, compiled.binds[name]) for name in compiled.positiontup or ()]


def instance_factory(entity: type[Entity]) -> Callable[[], Entity]:
    """Makes instances of a mapped class the way the ORM does when it loads a row: without
    running `__init__`, with the mapper's instance state in place (so the domain can change
    them). Not public API (`ClassManager.new_instance`): pinned by
    tests/integration/test_sqlalchemy_queries.py."""
    new_instance: Callable[[], Entity] = instrumentation.manager_of_class(entity).new_instance
    return new_instance


class CompiledStatement:
    """A statement's SQL for one dialect, and its positional arguments from named values."""

    def __init__(self, statement: sa.ClauseElement, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        self.sql = compiled.string
        self._parameters = [
            (
                name,
                # Literals the dialect sends as parameters (SQLite's "OFFSET ?") keep their
                # values.
                _REQUIRED if bind.required else bind.value,
                bind.type.dialect_impl(dialect).bind_processor(dialect),
            )
            for name, bind in positional_parameters(compiled)
        ]

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        args = []
        for name, fixed, process in self._parameters:
            value = values[name] if fixed is _REQUIRED or name in values else fixed
            args.append(value if process is None else process(value))
        return args


class EntityRows(Generic[Entity]):
    """Builds `entity` instances from the driver's rows of a SELECT of its table's columns."""

    def __init__(self, statement: sa.Select[Any], entity: type[Entity], dialect: Dialect) -> None:
        columns = list(statement.selected_columns)
        # Column keys are the entities' field names (mappers.py maps every column as itself).
        self._keys = [column.key for column in columns if column.key is not None]
        # Only the columns whose type converts the driver's value (enums, UTC datetimes, JSON
        # on SQLite, ...): the others are taken as they come.
        self._conversions = [
            (index, key, process)
            for index, (key, column) in enumerate(zip(self._keys, columns, strict=True))
            if (process := column.type.dialect_impl(dialect).result_processor(dialect, None))
        ]
        self._new = instance_factory(entity)

    def build(self, rows: Sequence[Row]) -> list[Entity]:
        return [self._entity(row) for row in rows]

    def _entity(self, row: Row) -> Entity:
        entity = self._new()
        fields = vars(entity)
        fields.update(zip(self._keys, row, strict=True))
        for index, key, process in self._conversions:
            fields[key] = process(row[index])
        return entity


class CompiledSelect(Generic[Entity]):
    """A SELECT of a mapped table's columns, compiled, that returns entities."""

    def __init__(self, statement: sa.Select[Any], entity: type[Entity], dialect: Dialect) -> None:
        self.statement = CompiledStatement(statement, dialect)
        self.rows = EntityRows(statement, entity, dialect)


def parameters(table: sa.Table, keys: Sequence[str], suffix: str = "") -> dict[str, Any]:
    """`{key: bindparam(key + suffix)}` typed as `table`'s columns, for INSERT/UPDATE values."""
    return {key: sa.bindparam(f"{key}{suffix}", type_=table.c[key].type) for key in keys}
