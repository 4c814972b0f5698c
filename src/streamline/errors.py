"""Errors that reach the user: each carries a message saying what to do and an exit status."""


class StreamlineError(Exception):
    """A failure the user can act on; the CLI prints its message, without a traceback."""

    exit_code = 1


class UsageError(StreamlineError):
    """Bad usage or invalid input: a malformed file, an unknown schema, an invalid topology."""

    exit_code = 2


class BrokerUnavailableError(StreamlineError):
    """No Kafka broker answered at the address that was tried."""

    exit_code = 1


class AuthenticationError(StreamlineError):
    """The broker refused the client's credentials, or the TLS handshake with it failed."""

    exit_code = 1


class AuthorizationError(StreamlineError):
    """The broker's ACLs deny an operation the command needs; the message names it."""

    exit_code = 1
