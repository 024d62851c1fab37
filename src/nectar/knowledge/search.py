"""Full-text search over a set of Honey Jars, one function for both databases.

SQLite: an FTS5 table (porter stemming) ranked with bm25, headings weighted 3x the body.
PostgreSQL: a stored, weighted ``tsvector`` column with a GIN index, ``websearch_to_tsquery``,
ranked with ``ts_rank``. Questions are matched on any of their content words (OR), so a
natural-language question finds the passages sharing the most, and rarest, words with it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

# Kept by the migrations: the FTS5 table (SQLite); on PostgreSQL a stored, weighted
# tsvector column (search_vector: heading A, body B) with a GIN index.
FTS_TABLE = "honey_jar_chunks_fts"

_STOPWORDS = """
a about above after again all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from
further had has have having he her here hers herself him himself his how i if in into is
it its itself just me more most my myself no nor not now of off on once only or other
our ours ourselves out over own same she should so some such than that the their theirs
them themselves then there these they this those through to too under until up very was
we were what when where which while who whom why will with would you your yours
yourself yourselves im ive id dont doesnt didnt cant wont isnt arent wasnt whats hows
pls please thanks thank hi hello hey ok okay tho thx u ur yes yeah get got also
"""
STOPWORDS = frozenset(_STOPWORDS.split())
# Letters and digits of any script: "Kündigungsfrist" and "café" are words too (FTS5 folds
# their accents on both sides; PostgreSQL matches them as written).
_TOKEN = re.compile(r"[^\W_]+")
MAX_TERMS = 24


def query_terms(text: str) -> list[str]:
    """Lower-cased content words of a question, in order, without duplicates."""
    seen: dict[str, None] = {}
    for token in _TOKEN.findall(text.lower().replace("'", "").replace("\u2019", "")):
        if token not in STOPWORDS and (len(token) > 1 or token.isdigit()):
            seen.setdefault(token, None)
    return list(seen)[:MAX_TERMS]


@dataclass(frozen=True, slots=True)
class Hit:
    chunk_id: int
    document_id: uuid.UUID
    jar_id: uuid.UUID
    title: str
    heading: str
    body: str
    # Higher is better; comparable only within one result list.
    score: float


_SQLITE = sa.text(
    f"""
    SELECT c.id, c.document_id, c.jar_id, d.title, c.heading, c.body,
           -bm25({FTS_TABLE}, 3.0, 1.0) AS score
    FROM {FTS_TABLE}
    JOIN honey_jar_chunks AS c ON c.id = {FTS_TABLE}.rowid
    JOIN honey_jar_documents AS d ON d.id = c.document_id
    WHERE {FTS_TABLE} MATCH :query AND c.jar_id IN :jars
    ORDER BY score DESC, c.id
    LIMIT :limit
    """  # noqa: S608 - constants only; values are bound
).bindparams(sa.bindparam("jars", expanding=True, type_=sa.Uuid()))

# The PostgreSQL search as plain SQL with asyncpg's numbered parameters ($1 the tsquery text,
# $2 the jar ids, $3 the limit): the chat turn runs it on a raw connection.
POSTGRES_SEARCH = """
    SELECT c.id, c.document_id, c.jar_id, d.title, c.heading, c.body,
           ts_rank(c.search_vector, q.query) AS score
    FROM honey_jar_chunks AS c
    JOIN honey_jar_documents AS d ON d.id = c.document_id,
         websearch_to_tsquery('english', $1) AS q(query)
    WHERE c.jar_id = ANY($2::uuid[]) AND c.search_vector @@ q.query
    ORDER BY score DESC, c.id
    LIMIT $3
"""
_POSTGRES = sa.text(
    POSTGRES_SEARCH.replace("$1", ":query")
    .replace("ANY($2::uuid[])", "ANY(:jars)")
    .replace("$3", ":limit")
).bindparams(sa.bindparam("jars", type_=sa.ARRAY(sa.Uuid())))


def pg_query(text: str) -> str | None:
    """The websearch query for a question: any of its content words; None if it has none."""
    terms = query_terms(text)
    return " or ".join(terms) if terms else None


def hit_from_row(row: Sequence[Any]) -> Hit:
    return Hit(
        chunk_id=row[0],
        document_id=_uuid(row[1]),
        jar_id=_uuid(row[2]),
        title=row[3],
        heading=row[4],
        body=row[5],
        score=float(row[6]),
    )


async def search(
    conn: AsyncConnection,
    jar_ids: list[uuid.UUID],
    text: str,
    limit: int = 10,
) -> list[Hit]:
    terms = query_terms(text)
    if not terms or not jar_ids:
        return []
    if conn.dialect.name == "sqlite":
        statement, query = _SQLITE, " OR ".join(f'"{t}"' for t in terms)
    else:
        statement, query = _POSTGRES, " or ".join(terms)  # as pg_query()
    result = await conn.execute(statement, {"query": query, "jars": jar_ids, "limit": limit})
    return [hit_from_row(row) for row in result]


def _uuid(value: object) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
