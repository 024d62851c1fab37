"""Nectar: support chatbots that hand the conversation to a human when they should."""

__version__ = "0.1.0"
