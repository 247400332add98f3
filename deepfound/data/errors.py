"""Errors raised for unreadable or malformed data (the command line turns them into exit 2)."""


class DataError(ValueError):
  """A data file is missing or malformed, or a data set is unknown."""
