"""conversation updates stay in place: every chat turn updates its conversation's counter and
last_message_at. An index on last_message_at (unused by any query) made each of those
updates write new entries into every index of the table; without it, and with room left on
each page (PostgreSQL fillfactor 70), the update is a heap-only (HOT) one. The bot's
conversations stay indexed by (bot_id, created_at), which never changes.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("nectar_bot_conversations") as batch_op:
        batch_op.drop_index("ix_nectar_bot_conversations_bot_last")
        batch_op.create_index(
            "ix_nectar_bot_conversations_bot_created", ["bot_id", "created_at"], unique=False
        )
    if op.get_bind().dialect.name == "postgresql":
        # New rows leave room on their page; existing pages gain it as they are rewritten.
        op.execute("ALTER TABLE nectar_bot_conversations SET (fillfactor = 70)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE nectar_bot_conversations RESET (fillfactor)")
    with op.batch_alter_table("nectar_bot_conversations") as batch_op:
        batch_op.drop_index("ix_nectar_bot_conversations_bot_created")
        batch_op.create_index(
            "ix_nectar_bot_conversations_bot_last", ["bot_id", "last_message_at"], unique=False
        )
