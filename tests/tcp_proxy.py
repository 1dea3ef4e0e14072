"""A real TCP proxy between a client and a server, for network faults the server cannot make itself: a peer
that goes silent without closing, or replies lost after the server acted on the request."""

from __future__ import annotations

import socket
import threading


class TcpProxy:
    """Forwards every connection to ``upstream`` (host, port), both ways, until told otherwise.

    ``stalled`` (set it): from then on nothing is forwarded either way, and nothing is closed: the server looks
    alive and never answers. ``lose_replies_after``: on a connection that has sent these bytes, the server's
    replies are swallowed from then on (it applied the request; the client never hears back).
    ``cut_request_with`` (set it; once): the first request holding these bytes is not forwarded, and its
    connection is closed (the server never saw it; the client's read fails); ``cuts`` counts them."""

    def __init__(self, upstream: tuple[str, int], lose_replies_after: bytes | None = None) -> None:
        self.upstream = upstream
        self.lose_replies_after = lose_replies_after
        self.cut_request_with: bytes | None = None
        self.cuts = 0
        self.stalled = threading.Event()
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(self.upstream)
            self._sockets += [client, upstream]
            marked = threading.Event()
            threading.Thread(target=self._requests, args=(client, upstream, marked), daemon=True).start()
            threading.Thread(target=self._replies, args=(upstream, client, marked), daemon=True).start()

    def _requests(self, source: socket.socket, sink: socket.socket, marked: threading.Event) -> None:
        try:
            while data := source.recv(65536):
                if self.stalled.is_set():
                    return
                if self.cut_request_with is not None and self.cut_request_with in data:
                    self.cut_request_with, self.cuts = None, self.cuts + 1
                    source.shutdown(socket.SHUT_RDWR)
                    sink.shutdown(socket.SHUT_RDWR)
                    return
                if self.lose_replies_after is not None and self.lose_replies_after in data:
                    marked.set()
                sink.sendall(data)
        except OSError:
            pass

    def _replies(self, source: socket.socket, sink: socket.socket, marked: threading.Event) -> None:
        try:
            while data := source.recv(65536):
                if self.stalled.is_set():
                    return
                if not marked.is_set():
                    sink.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        """Stop accepting and close every connection."""
        for sock in self._sockets:
            sock.close()
