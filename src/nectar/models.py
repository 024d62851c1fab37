"""Every table, imported in one place so the metadata (and Alembic) sees them all."""

from nectar.bots.models import NectarBot
from nectar.db import metadata
from nectar.users.models import AccessToken, User

__all__ = ["AccessToken", "NectarBot", "User", "metadata"]
