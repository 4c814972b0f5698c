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
