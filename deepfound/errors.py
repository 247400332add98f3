"""The error types of the input boundary (exit status 2 on the command line)."""


class ConfigError(ValueError):
  """A config value is missing, out of range or inconsistent with another."""
