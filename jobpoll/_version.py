"""The installed distribution's version, from its metadata."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("jobpoll")
except PackageNotFoundError:  # pragma: no cover - running from a source tree not installed
    __version__ = "0+unknown"
