"""conversation handed back to the bot: where the length and duration triggers count from

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("nectar_bot_conversations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("bot_since_seq", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("bot_since_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nectar_bot_conversations", schema=None) as batch_op:
        batch_op.drop_column("bot_since_at")
        batch_op.drop_column("bot_since_seq")
