"""Message signing: the beat (and the CLI) sign each message with HMAC-SHA256; workers verify.

The key comes from the environment (``security.signing_key: ${BEATD_SIGNING_KEY}``), never from YAML in a
repository. A worker with a key dead-letters unsigned and forged messages instead of running them.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["Signer"]


class Signer:
    """Signs and verifies message bodies with one shared secret."""

    def __init__(self, key: str) -> None:
        self._key = key.encode()

    @classmethod
    def optional(cls, key: str | None) -> Signer | None:
        """A signer for ``key``, or None when signing is not configured."""
        return cls(key) if key else None

    def sign(self, message: str) -> str:
        """Hex HMAC-SHA256 of the message text."""
        return hmac.new(self._key, message.encode(), hashlib.sha256).hexdigest()

    def verify(self, message: str, signature: str) -> bool:
        """True when ``signature`` is this key's signature of ``message`` (constant-time comparison)."""
        return bool(signature) and hmac.compare_digest(self.sign(message), signature)
