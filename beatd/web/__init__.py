"""``beatd web``: the dashboard and HTTP API (``/api/v1``), an ASGI app (Starlette) over :class:`beatd.Client`.

Pages render on the server (Jinja2, autoescaped) and work without JavaScript; ``static/app.js`` refreshes their
live parts. Every page is an API endpoint rendered as a template (``views.ENDPOINTS``). Who may do what:
``beatd.web.security``.
"""

from beatd.web.app import API, create_app
from beatd.web.catalogue import Catalogue
from beatd.web.security import Tokens
from beatd.web.views import Web

__all__ = ["API", "Catalogue", "Tokens", "Web", "create_app"]
