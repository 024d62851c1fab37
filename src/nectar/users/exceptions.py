from nectar.errors import Conflict, NotFound, Unauthorized


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"

    def __init__(self) -> None:
        super().__init__("incorrect email or password")


class InvalidToken(Unauthorized):
    code = "invalid_token"

    def __init__(self) -> None:
        super().__init__("the access token is missing, expired or revoked")


class UserNotFound(NotFound):
    code = "user_not_found"

    def __init__(self) -> None:
        super().__init__("user not found")


class EmailTaken(Conflict):
    code = "email_taken"

    def __init__(self) -> None:
        super().__init__("a user with this email already exists")


class LastAdmin(Conflict):
    code = "last_admin"

    def __init__(self) -> None:
        super().__init__("this is the last active admin; make another admin first")


class UserOwnsBots(Conflict):
    code = "user_owns_bots"

    def __init__(self, count: int) -> None:
        super().__init__(
            f"this user owns {count} bot(s); delete them first or deactivate the user instead"
        )
