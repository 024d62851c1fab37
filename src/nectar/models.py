"""Every table, imported in one place so the metadata (and Alembic) sees them all."""

from nectar.bots.models import NectarBot
from nectar.chat.models import Conversation, Message, Usage
from nectar.db import metadata
from nectar.handoffs.models import Handoff, HandoffEvent, ResponseTemplate
from nectar.knowledge.models import BotHoneyJar, Chunk, Document, HoneyJar
from nectar.notifications.models import Delivery, DeliveryAttempt, Notification
from nectar.users.models import AccessToken, User

__all__ = [
    "AccessToken",
    "BotHoneyJar",
    "Chunk",
    "Conversation",
    "Delivery",
    "DeliveryAttempt",
    "Document",
    "Handoff",
    "HandoffEvent",
    "HoneyJar",
    "Message",
    "NectarBot",
    "Notification",
    "ResponseTemplate",
    "Usage",
    "User",
    "metadata",
]
