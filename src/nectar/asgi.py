"""``uvicorn nectar.asgi:app``: the app built from the environment."""

from nectar.app import create_app

app = create_app()
