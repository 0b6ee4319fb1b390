"""One field of a job's metadata as text, for filters: the same expression its index uses.

Why not `metadata ->> 'sku'` on PostgreSQL: the column is `json`, stored as text and parsed
when read. Records stored before the door refused lone surrogates hold escapes such as
`"caf\\udce9"`, which PostgreSQL's JSON parser refuses: one such row makes every query that
reads a field fail, and an expression index on `->>` cannot even be built over it (nor can a
new one be written). The migration that adds the index therefore creates
`tryon_metadata_field(doc, field)`, which answers NULL for a document it cannot parse, and
both the index and every filter call it with the field as a literal, so that the planner
matches the two. SQLite reads its JSON leniently: there the plain JSON path is used.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ColumnElement, FunctionElement

from kolors_tryon.store.tables import JobRow

# Created by migration 0007 on PostgreSQL (and indexed there for `sku`).
SQL_FUNCTION = "tryon_metadata_field"
CREATE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {SQL_FUNCTION}(doc json, field text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN doc ->> field;
EXCEPTION WHEN others THEN
    RETURN NULL;  -- a document PostgreSQL cannot parse matches no filter
END
$$
"""
DROP_FUNCTION = f"DROP FUNCTION IF EXISTS {SQL_FUNCTION}(json, text)"


class _MetadataField(FunctionElement[str]):
    """`field` of a job's metadata as text (NULL where absent)."""

    type = String()
    inherit_cache = True
    name = "metadata_field"

    def __init__(self, field: str) -> None:
        super().__init__()
        self.field = field


@compiles(_MetadataField)
def _json_path(element: _MetadataField, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(JobRow.job_metadata[element.field].as_string(), **kw)


@compiles(_MetadataField, "postgresql")
def _tolerant_function(element: _MetadataField, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(JobRow.__table__.c.metadata, **kw)
    field = compiler.process(literal(element.field, String()), literal_binds=True)
    return f"{SQL_FUNCTION}({column}, {field})"


def metadata_field(field: str) -> ColumnElement[str]:
    """The expression a filter on one metadata field compares with."""
    return _MetadataField(field)
