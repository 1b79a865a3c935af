"""Error types. Every failure a user can cause is one of these; the CLI prints one line and exits 1."""


class NerfError(Exception):
    """Base class: a problem with the user's input or environment, not a bug."""


class DataError(NerfError):
    """A scene file (poses_bounds.npy, images, COLMAP model) is missing or malformed."""


class ConfigError(NerfError):
    """A config file, override or option value is invalid."""


class UsageError(ConfigError):
    """A command line that asks for something the command cannot do (an option value it cannot
    use, named by its flag; --set on a key the chosen model does not read): exit 2, as click's
    own usage errors."""

    exit_code = 2


class CheckpointError(NerfError):
    """A checkpoint is missing, truncated, or from an incompatible version."""
