from nectar.errors import Conflict, NotFound


class BotNotFound(NotFound):
    code = "bot_not_found"

    def __init__(self) -> None:
        super().__init__("bot not found")


class SlugTaken(Conflict):
    code = "slug_taken"

    def __init__(self, slug: str) -> None:
        super().__init__(f"the slug {slug!r} is already used by another bot")
