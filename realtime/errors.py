"""One exception hierarchy for everything a user can get wrong.

The CLI turns any :class:`OnbeatError` into a single line on stderr and exit code 2.
"""

from __future__ import annotations


class OnbeatError(Exception):
    """Base class of every error that onbeat reports to a user as one line."""

    exit_code: int = 2


class ConfigError(OnbeatError):
    """An impossible or unknown configuration value."""


class AudioFileError(OnbeatError):
    """A missing, unreadable, corrupt or empty audio file."""


class DeviceError(OnbeatError):
    """An unknown or unusable audio device."""


class StageError(OnbeatError):
    """A processing stage refused the context it was prepared with."""
