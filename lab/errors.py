"""The lab's exception tree. The CLI catches only ``LabError`` and maps it to an exit code."""


class LabError(Exception):
    """Anything the lab reports to the user as one clear line."""

    exit_code = 2


class ConfigError(LabError):
    """A bad config: names the key path and what is expected."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path


class UsageError(LabError):
    """A bad command-line argument or run directory."""


class ServerStartError(LabError):
    """A server that did not become ready; carries its log's tail."""

    def __init__(self, reason: str, log_tail: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.log_tail = log_tail


class Interrupted(LabError):
    """The run was stopped by SIGINT or SIGTERM."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum
        self.exit_code = 128 + signum


class Busy(LabError):
    """A lock this command needs is held by another live lab process."""


class StorageError(LabError):
    """The run folder cannot be written (disk full, read-only): the run stops."""

    exit_code = 1


class ServiceError(LabError):
    """A service of the run (``[services]``) did not start: nothing can be measured."""

    exit_code = 1
