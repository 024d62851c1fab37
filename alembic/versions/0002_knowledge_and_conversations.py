"""honey jars, documents, chunks with full-text search, conversations, messages, usage

Bots link to jars through nectar_bot_honey_jars (replacing the JSON list of ids, which could
point at jars that no longer exist).

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

# Written out here rather than imported: a migration must not change when app code does.
_PG_VECTOR = (
    "(setweight(to_tsvector('english'::regconfig, heading), 'A') || "
    "setweight(to_tsvector('english'::regconfig, body), 'B'))"
)
_SQLITE_FTS = [
    "CREATE VIRTUAL TABLE honey_jar_chunks_fts USING fts5(heading, body, "
    "content='honey_jar_chunks', content_rowid='id', "
    "tokenize='porter unicode61 remove_diacritics 2')",
    "CREATE TRIGGER honey_jar_chunks_fts_ai AFTER INSERT ON honey_jar_chunks BEGIN "
    "INSERT INTO honey_jar_chunks_fts(rowid, heading, body) "
    "VALUES (new.id, new.heading, new.body); END",
    "CREATE TRIGGER honey_jar_chunks_fts_ad AFTER DELETE ON honey_jar_chunks BEGIN "
    "INSERT INTO honey_jar_chunks_fts(honey_jar_chunks_fts, rowid, heading, body) "
    "VALUES ('delete', old.id, old.heading, old.body); END",
    "CREATE TRIGGER honey_jar_chunks_fts_au AFTER UPDATE ON honey_jar_chunks BEGIN "
    "INSERT INTO honey_jar_chunks_fts(honey_jar_chunks_fts, rowid, heading, body) "
    "VALUES ('delete', old.id, old.heading, old.body); "
    "INSERT INTO honey_jar_chunks_fts(rowid, heading, body) "
    "VALUES (new.id, new.heading, new.body); END",
]


def upgrade() -> None:
    op.create_table(
        "honey_jars",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_honey_jars_owner_id_users"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_honey_jars")),
    )
    with op.batch_alter_table("honey_jars", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_honey_jars_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_honey_jars_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "honey_jar_documents",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("jar_id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("content_type", sa.String(length=32), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=True),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["jar_id"],
            ["honey_jars.id"],
            name=op.f("fk_honey_jar_documents_jar_id_honey_jars"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_honey_jar_documents")),
    )
    with op.batch_alter_table("honey_jar_documents", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_honey_jar_documents_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_honey_jar_documents_jar_id"), ["jar_id"], unique=False)

    op.create_table(
        "nectar_bot_conversations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("bot_id", sa.Uuid(), nullable=False),
        sa.Column("user_ref", sa.String(length=200), nullable=True),
        sa.Column("user_name", sa.String(length=200), nullable=True),
        sa.Column("user_email", sa.String(length=320), nullable=True),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("message_count", sa.Integer(), nullable=False),
        sa.Column("handled_by", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_message_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["bot_id"],
            ["nectar_bots.id"],
            name=op.f("fk_nectar_bot_conversations_bot_id_nectar_bots"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nectar_bot_conversations")),
    )
    with op.batch_alter_table("nectar_bot_conversations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_nectar_bot_conversations_bot_last", ["bot_id", "last_message_at"], unique=False
        )

    op.create_table(
        "nectar_bot_honey_jars",
        sa.Column("bot_id", sa.Uuid(), nullable=False),
        sa.Column("jar_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bot_id"],
            ["nectar_bots.id"],
            name=op.f("fk_nectar_bot_honey_jars_bot_id_nectar_bots"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["jar_id"],
            ["honey_jars.id"],
            name=op.f("fk_nectar_bot_honey_jars_jar_id_honey_jars"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("bot_id", "jar_id", name=op.f("pk_nectar_bot_honey_jars")),
    )
    with op.batch_alter_table("nectar_bot_honey_jars", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_nectar_bot_honey_jars_jar_id"), ["jar_id"], unique=False
        )

    op.create_table(
        "honey_jar_chunks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.Uuid(), nullable=False),
        sa.Column("jar_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("heading", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["honey_jar_documents.id"],
            name=op.f("fk_honey_jar_chunks_document_id_honey_jar_documents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["jar_id"],
            ["honey_jars.id"],
            name=op.f("fk_honey_jar_chunks_jar_id_honey_jars"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_honey_jar_chunks")),
    )
    with op.batch_alter_table("honey_jar_chunks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_honey_jar_chunks_document_id"), ["document_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_honey_jar_chunks_jar_id"), ["jar_id"], unique=False)

    if op.get_bind().dialect.name == "sqlite":
        for statement in _SQLITE_FTS:
            op.execute(statement)
    else:
        op.execute(
            f"CREATE INDEX ix_honey_jar_chunks_search ON honey_jar_chunks USING GIN ({_PG_VECTOR})"
        )

    op.create_table(
        "nectar_bot_messages",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("conversation_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("sources", JSON, nullable=True),
        sa.Column("response_time_ms", sa.Integer(), nullable=True),
        sa.Column("author_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["author_id"],
            ["users.id"],
            name=op.f("fk_nectar_bot_messages_author_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["nectar_bot_conversations.id"],
            name=op.f("fk_nectar_bot_messages_conversation_id_nectar_bot_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nectar_bot_messages")),
        sa.UniqueConstraint(
            "conversation_id", "seq", name=op.f("uq_nectar_bot_messages_conversation_id")
        ),
    )
    op.create_table(
        "nectar_bot_usage",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("bot_id", sa.Uuid(), nullable=False),
        sa.Column("conversation_id", sa.Uuid(), nullable=True),
        sa.Column("message_id", sa.Uuid(), nullable=True),
        sa.Column("response_time_ms", sa.Integer(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("knowledge_matches", sa.Integer(), nullable=False),
        sa.Column("rate_limit_hit", sa.Boolean(), nullable=False),
        sa.Column("handled_by", sa.String(length=8), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["bot_id"],
            ["nectar_bots.id"],
            name=op.f("fk_nectar_bot_usage_bot_id_nectar_bots"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["nectar_bot_conversations.id"],
            name=op.f("fk_nectar_bot_usage_conversation_id_nectar_bot_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nectar_bot_usage")),
    )
    with op.batch_alter_table("nectar_bot_usage", schema=None) as batch_op:
        batch_op.create_index(
            "ix_nectar_bot_usage_bot_created", ["bot_id", "created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_nectar_bot_usage_conversation_id"), ["conversation_id"], unique=False
        )

    with op.batch_alter_table("nectar_bots", schema=None) as batch_op:
        batch_op.drop_column("honey_jar_ids")


def downgrade() -> None:
    with op.batch_alter_table("nectar_bots", schema=None) as batch_op:
        batch_op.add_column(sa.Column("honey_jar_ids", JSON, nullable=False, server_default="[]"))
    with op.batch_alter_table("nectar_bots", schema=None) as batch_op:
        batch_op.alter_column("honey_jar_ids", server_default=None)

    with op.batch_alter_table("nectar_bot_usage", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_nectar_bot_usage_conversation_id"))
        batch_op.drop_index("ix_nectar_bot_usage_bot_created")

    op.drop_table("nectar_bot_usage")
    op.drop_table("nectar_bot_messages")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE honey_jar_chunks_fts")
        for trigger in ("ai", "ad", "au"):
            op.execute(f"DROP TRIGGER IF EXISTS honey_jar_chunks_fts_{trigger}")
    else:
        op.execute("DROP INDEX ix_honey_jar_chunks_search")
    with op.batch_alter_table("honey_jar_chunks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_honey_jar_chunks_jar_id"))
        batch_op.drop_index(batch_op.f("ix_honey_jar_chunks_document_id"))

    op.drop_table("honey_jar_chunks")
    with op.batch_alter_table("nectar_bot_honey_jars", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_nectar_bot_honey_jars_jar_id"))

    op.drop_table("nectar_bot_honey_jars")
    with op.batch_alter_table("nectar_bot_conversations", schema=None) as batch_op:
        batch_op.drop_index("ix_nectar_bot_conversations_bot_last")

    op.drop_table("nectar_bot_conversations")
    with op.batch_alter_table("honey_jar_documents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_honey_jar_documents_jar_id"))
        batch_op.drop_index(batch_op.f("ix_honey_jar_documents_created_at"))

    op.drop_table("honey_jar_documents")
    with op.batch_alter_table("honey_jars", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_honey_jars_owner_id"))
        batch_op.drop_index(batch_op.f("ix_honey_jars_created_at"))

    op.drop_table("honey_jars")
