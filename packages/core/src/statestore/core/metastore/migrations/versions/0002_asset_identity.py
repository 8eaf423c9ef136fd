"""Asset rows hold only their identity: the name when the asset has one, else the URI, else the id.

Earlier versions resolved an ``AssetScope`` across name, URI and id and completed a row with
whichever of them it lacked, so a uri-only scope could read a named asset's state and two names
sharing one URI wrote to one row. From this revision an asset is identified by its name, else its
URI, else its id (``statestore.core.naming.asset_identity``), as on every other backend: this
clears the non-identifying columns of existing rows. State written before under a uri-only or
id-only scope to a row that also had a name is now found by that name. The downgrade keeps the
data as it is (the older code reads such rows).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Clear the URI and id of named rows, and the id of uri-identified rows."""
    asset = sa.table(
        "statestore_asset",
        sa.column("name", sa.Text()),
        sa.column("uri", sa.Text()),
        sa.column("uri_hash", sa.CHAR(64)),
        sa.column("asset_id", sa.BigInteger()),
    )
    op.execute(asset.update().where(asset.c.name.is_not(None)).values(uri=None, uri_hash=None, asset_id=None))
    op.execute(asset.update().where(asset.c.name.is_(None), asset.c.uri.is_not(None)).values(asset_id=None))


def downgrade() -> None:
    """Nothing to undo: rows holding one identity are valid for revision 0001 too."""
