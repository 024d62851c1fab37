from nectar.errors import Conflict, Forbidden, NectarError, NotFound, Unauthorized


class InvalidApiKey(Unauthorized):
    code = "invalid_api_key"

    def __init__(self) -> None:
        super().__init__("the API key is missing, wrong, or not this bot's")


class ConversationNotFound(NotFound):
    code = "conversation_not_found"

    def __init__(self) -> None:
        super().__init__("conversation not found for this bot")


class MessageNotFound(NotFound):
    code = "message_not_found"

    def __init__(self) -> None:
        super().__init__("the 'after' message is not in this conversation")


class BotInactive(Forbidden):
    code = "bot_inactive"

    def __init__(self) -> None:
        super().__init__("this bot is inactive")


class BotUnavailable(NectarError):
    code = "bot_maintenance"
    status = 503

    def __init__(self) -> None:
        super().__init__(
            "this bot is under maintenance; try again later", headers={"Retry-After": "60"}
        )


class ConversationClosed(Conflict):
    code = "conversation_closed"

    def __init__(self) -> None:
        super().__init__("this conversation was closed by our support team; start a new one")
