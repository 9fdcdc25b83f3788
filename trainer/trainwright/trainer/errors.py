"""Errors a user can fix: each says where (file, row, field, env var) and why, on one line."""


class TrainerError(Exception):
    """A problem with the job's input, found before (or instead of) training."""

    def __init__(self, where: str, reason: str):
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}")
