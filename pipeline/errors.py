"""The mistakes a user can make, as typed errors raised anywhere; `pipeline.command` prints them (exit 2)."""


class UserError(Exception):
    """Something the user can fix; the message says what, on one line."""


class JobConfigError(UserError):
    """The job cannot start as configured; the message says what to change."""


class CommandError(UserError):
    """A command (search, report) cannot run as asked."""


class NotAFinishedRun(UserError):
    """No finished output of this job at the path: no `_SUCCESS`, not our manifest, a file gone, damaged or not ours."""
