"""A job module that adds a log handler when imported, as some libraries and scripts do."""

from __future__ import annotations

import logging

own = logging.StreamHandler()  # writes to sys.stderr as it is now, at import
own.setFormatter(logging.Formatter("own handler: %(message)s"))
logging.getLogger("tests.handler_job").addHandler(own)


def logs_through_its_handler() -> None:
    """Log one warning through the module's logger (its own handler, then the root's)."""
    logging.getLogger("tests.handler_job").warning("through the handler")
