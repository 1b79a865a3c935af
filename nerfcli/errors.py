"""Error types. Every failure a user can cause is one of these; the CLI prints one line and exits 1."""


class NerfError(Exception):
    """Base class: a problem with the user's input or environment, not a bug."""


class DataError(NerfError):
    """A scene file (poses_bounds.npy, images, COLMAP model) is missing or malformed."""


class ConfigError(NerfError):
    """A config file, override or option value is invalid."""


class CheckpointError(NerfError):
    """A checkpoint is missing, truncated, or from an incompatible version."""


class UsageError(ConfigError):
    """An option value the command cannot use (named by its flag): exit 2, as click's own."""
