"""``${VAR}`` and ``${VAR:-default}`` substitution in config strings; the environment is passed in."""

from __future__ import annotations

import re
from collections.abc import Mapping

from beatd.errors import BeatdError

__all__ = ["MissingVariable", "substitute"]

# $${ is an escaped literal "${"; otherwise ${NAME} or ${NAME:-default} (default may be empty, has no "}").
_PATTERN = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{[^}]*\}?")


class MissingVariable(BeatdError):
    """A ``${VAR}`` names an unset variable and gives no default, or the reference is malformed."""


def substitute(text: str, environ: Mapping[str, str]) -> str:
    """Replace every ``${VAR}`` / ``${VAR:-default}`` in ``text`` from ``environ``.

    ``${VAR:-default}`` uses the default when VAR is unset or empty (as docker compose and the shell do);
    ``$${`` stands for a literal ``${``; a ``$`` not followed by ``{`` is left alone.
    """

    def replace(match: re.Match[str]) -> str:
        whole = match.group(0)
        if whole == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        if default is not None and "${" in default:
            raise MissingVariable(f"nested reference in the default of {whole!r}: a default must be plain text")
        if name is None:
            raise MissingVariable(f"malformed variable reference {whole!r}: expected ${{NAME}} or ${{NAME:-default}}")
        value = environ.get(name)
        if value:
            return value
        if default is not None:
            return default
        if value is not None:  # set but empty, and no default: empty is what the user asked for
            return value
        raise MissingVariable(f"environment variable {name} is not set: set it, or write ${{{name}:-default}}")

    return _PATTERN.sub(replace, text)
