"""Response workflow: TOTP and login lockout, agents' scan progress, time to respond, the action plan, SIEM cursors.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 15:05:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("users") as users:
        users.add_column(sa.Column("totp_secret", sa.String(length=64), nullable=True))
        users.add_column(sa.Column("totp_enabled_at", sa.DateTime(timezone=True), nullable=True))
        users.add_column(sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0"))
        users.add_column(sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("agents") as agents:
        agents.add_column(sa.Column("scan_progress", sa.JSON(), nullable=True))
    with op.batch_alter_table("incidents") as incidents:
        incidents.add_column(sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "action_plan_steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("required", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_action_plan_steps")),
    )
    op.create_table(
        "incident_steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_by", sa.String(length=160), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incidents.id"], name=op.f("fk_incident_steps_incident_id_incidents")
        ),
        sa.ForeignKeyConstraint(
            ["step_id"], ["action_plan_steps.id"], name=op.f("fk_incident_steps_step_id_action_plan_steps")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_steps")),
        sa.UniqueConstraint("incident_id", "step_id", name=op.f("uq_incident_steps_incident_id_step_id")),
    )
    op.create_index(op.f("ix_incident_steps_incident_id"), "incident_steps", ["incident_id"], unique=False)
    op.create_table(
        "forward_cursors",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("seq", _SEQ, nullable=False),
        sa.Column("sent", _SEQ, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_forward_cursors")),
    )


def downgrade() -> None:
    op.drop_table("forward_cursors")
    op.drop_index(op.f("ix_incident_steps_incident_id"), table_name="incident_steps")
    op.drop_table("incident_steps")
    op.drop_table("action_plan_steps")
    with op.batch_alter_table("incidents") as incidents:
        incidents.drop_column("acknowledged_at")
    with op.batch_alter_table("agents") as agents:
        agents.drop_column("scan_progress")
    with op.batch_alter_table("users") as users:
        users.drop_column("locked_until")
        users.drop_column("failed_logins")
        users.drop_column("totp_enabled_at")
        users.drop_column("totp_secret")
