"""Responders answer a user's question from the bot's Honey Jars."""

from __future__ import annotations

from nectar.chat.responders.base import Responder
from nectar.config import ResponderConfig


def build_responder(config: ResponderConfig) -> Responder:
    if config.provider == "openai":
        from nectar.chat.responders.openai import OpenAIResponder

        return OpenAIResponder(config.openai)
    from nectar.chat.responders.builtin import BuiltinResponder

    return BuiltinResponder()
