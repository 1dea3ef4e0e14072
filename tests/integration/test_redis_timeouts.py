"""A write whose reply never comes (Redis applied it; the answer was lost on the way back) is not sent again.

beatd's clients are made with ``from_url``, whose connections retry nothing; a client made with ``redis.Redis()``'s
defaults retries a timed-out command 10 times, and a manual fire, applied on every try, was queued 11 times
(checked: this test fails so). A guard, so that a change of how clients are made cannot bring that in."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from beatd.client import Client
from beatd.keys import Keys
from beatd.store.base import StoreUnavailable
from tests.redis_server import RedisServer
from tests.tcp_proxy import TcpProxy


def test_a_trigger_whose_reply_is_lost_is_applied_once(
    tmp_path: Path, shared_redis: RedisServer, namespace: str
) -> None:
    """`trigger` through a connection that loses the reply of its XADD: the call fails with StoreUnavailable
    after one timeout, and the queue holds the fire once (with 10 retries it held it 11 times)."""
    proxy = TcpProxy(("127.0.0.1", shared_redis.port), lose_replies_after=b"XADD")
    config = tmp_path / "beatd.yaml"
    config.write_text(
        textwrap.dedent(f"""\
            redis: {{url: 'redis://127.0.0.1:{proxy.port}/0'}}
            namespace: {namespace}
            jobs:
              plain: {{command: ["true"], every: 1h}}
        """)
    )
    try:
        with Client.from_config(config, environ={}) as client:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                client.trigger("plain")
            failed_after = time.monotonic() - started
    finally:
        proxy.close()
    entries = shared_redis.client().xrange(Keys(namespace).queue("default"))
    assert len(entries) == 1, f"the fire was appended {len(entries)} times"
    assert failed_after < 30, f"the trigger failed only after {failed_after:.1f}s"
