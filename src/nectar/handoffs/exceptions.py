from nectar.errors import Conflict, NotFound


class HandoffNotFound(NotFound):
    code = "handoff_not_found"

    def __init__(self) -> None:
        super().__init__("handoff not found")


class InvalidTransition(Conflict):
    code = "invalid_transition"


class HandoffAlreadyOpen(Conflict):
    code = "handoff_already_open"

    def __init__(self, handoff_id: object) -> None:
        super().__init__(f"this conversation already has an open handoff ({handoff_id})")


class AgentNotFound(NotFound):
    code = "agent_not_found"

    def __init__(self) -> None:
        super().__init__("no active agent or admin with this id")


class TemplateNotFound(NotFound):
    code = "template_not_found"

    def __init__(self) -> None:
        super().__init__("response template not found")
