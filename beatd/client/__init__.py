"""From application code: :class:`Client` (sync) and :class:`AsyncClient` (asyncio) for one deployment.

```python
from beatd.client import Client

client = Client.from_config("/etc/beatd/beatd.yaml")
handle = client.trigger("send_report", kwargs={"customer_id": 42})
print(handle.result(timeout=10))
```

The CLI is built on the same client (``beatd trigger``, ``pause``, ``resume``, ``history``, ``show``,
``status``, ``jobs``, ``next``). Reference: docs/client.md.
"""

from beatd.client.aio import AsyncClient, AsyncFireHandle
from beatd.client.handles import FireHandle
from beatd.client.sync import Client
from beatd.errors import OverridesRefused, RunFailed, UnknownJob
from beatd.records import RunRecord

__all__ = [
    "AsyncClient",
    "AsyncFireHandle",
    "Client",
    "FireHandle",
    "OverridesRefused",
    "RunFailed",
    "RunRecord",
    "UnknownJob",
]
