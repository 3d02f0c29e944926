"""The one base class of errors a user can cause and fix (bad path, bad setting,
missing weights, corrupt file). The CLI prints their message and exits non-zero;
anything else is a bug and keeps its traceback."""


class UserError(Exception):
    pass
