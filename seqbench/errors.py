"""Errors that mean "the user asked for something invalid" (as opposed to a bug).

The CLI turns a ConfigError into a one-line message and exit code 2; library users catch it as a
ValueError.
"""


class ConfigError(ValueError):
    """An invalid configuration or argument; the message says what is wrong and what is allowed."""
