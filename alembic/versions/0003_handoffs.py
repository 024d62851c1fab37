"""handoffs: the handoff, its event history, response templates, per-bot handoff settings

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "nectar_bot_response_templates",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_by_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name=op.f("fk_nectar_bot_response_templates_created_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nectar_bot_response_templates")),
        sa.UniqueConstraint("name", name=op.f("uq_nectar_bot_response_templates_name")),
    )
    op.create_table(
        "nectar_bot_handoffs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("bot_id", sa.Uuid(), nullable=False),
        sa.Column("conversation_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("urgency", sa.String(length=16), nullable=False),
        sa.Column("evidence", JSON, nullable=False),
        sa.Column("context", JSON, nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("trigger_message_id", sa.Uuid(), nullable=True),
        sa.Column("assignee_id", sa.Uuid(), nullable=True),
        sa.Column("opened_by_id", sa.Uuid(), nullable=True),
        sa.Column("resolution_notes", sa.Text(), nullable=True),
        sa.Column("return_to_bot", sa.Boolean(), nullable=False),
        sa.Column("escalation_level", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_response_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("accept_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolve_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["assignee_id"],
            ["users.id"],
            name=op.f("fk_nectar_bot_handoffs_assignee_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["bot_id"],
            ["nectar_bots.id"],
            name=op.f("fk_nectar_bot_handoffs_bot_id_nectar_bots"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["nectar_bot_conversations.id"],
            name=op.f("fk_nectar_bot_handoffs_conversation_id_nectar_bot_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["opened_by_id"],
            ["users.id"],
            name=op.f("fk_nectar_bot_handoffs_opened_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nectar_bot_handoffs")),
    )
    with op.batch_alter_table("nectar_bot_handoffs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_nectar_bot_handoffs_assignee_id"), ["assignee_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_nectar_bot_handoffs_bot_id"), ["bot_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_nectar_bot_handoffs_reason"), ["reason"], unique=False)
        batch_op.create_index(
            "ix_nectar_bot_handoffs_status_created", ["status", "created_at"], unique=False
        )
        batch_op.create_index(
            "uq_nectar_bot_handoffs_open_conversation",
            ["conversation_id"],
            unique=True,
            sqlite_where=sa.text("status IN ('pending', 'assigned', 'in_progress')"),
            postgresql_where=sa.text("status IN ('pending', 'assigned', 'in_progress')"),
        )

    op.create_table(
        "nectar_bot_handoff_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("handoff_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=True),
        sa.Column("detail", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["users.id"],
            name=op.f("fk_nectar_bot_handoff_events_actor_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["handoff_id"],
            ["nectar_bot_handoffs.id"],
            name=op.f("fk_nectar_bot_handoff_events_handoff_id_nectar_bot_handoffs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nectar_bot_handoff_events")),
    )
    with op.batch_alter_table("nectar_bot_handoff_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_nectar_bot_handoff_events_handoff", ["handoff_id", "created_at"], unique=False
        )

    with op.batch_alter_table("nectar_bots", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("handoff_settings", JSON, server_default="{}", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("nectar_bots", schema=None) as batch_op:
        batch_op.drop_column("handoff_settings")

    with op.batch_alter_table("nectar_bot_handoff_events", schema=None) as batch_op:
        batch_op.drop_index("ix_nectar_bot_handoff_events_handoff")

    op.drop_table("nectar_bot_handoff_events")
    with op.batch_alter_table("nectar_bot_handoffs", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_nectar_bot_handoffs_open_conversation",
            sqlite_where=sa.text("status IN ('pending', 'assigned', 'in_progress')"),
            postgresql_where=sa.text("status IN ('pending', 'assigned', 'in_progress')"),
        )
        batch_op.drop_index("ix_nectar_bot_handoffs_status_created")
        batch_op.drop_index(batch_op.f("ix_nectar_bot_handoffs_reason"))
        batch_op.drop_index(batch_op.f("ix_nectar_bot_handoffs_bot_id"))
        batch_op.drop_index(batch_op.f("ix_nectar_bot_handoffs_assignee_id"))

    op.drop_table("nectar_bot_handoffs")
    op.drop_table("nectar_bot_response_templates")
