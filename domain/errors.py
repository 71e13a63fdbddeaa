"""Rule violations the domain refuses. Each is a domain class so callers never parse messages."""


class DomainError(Exception):
    """Base of every rule the domain enforces."""


class InvalidValue(DomainError):
    """A value breaks a domain rule (empty name, malformed email, ...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class InvalidTransition(DomainError):
    """A lifecycle step that the current state does not allow (e.g. publishing an archived bot)."""


class ConversationClosed(DomainError):
    """A closed conversation takes no further messages."""


class BotNotAcceptingMessages(DomainError):
    """An archived bot answers no new messages."""
