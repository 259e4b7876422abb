"""One exception type for bad input: the CLI prints its message on one line and exits 2."""


class PosekitError(Exception):
    """Bad input (data, image, config, model name, ...). The message names the file and the
    problem in one line."""


class DataError(PosekitError):
    """A dataset, image or annotation file is missing, damaged or inconsistent."""


class ConfigError(PosekitError):
    """A config file or a command-line override is invalid."""
