"""Binding and connection hygiene of the viewer's server: a taken port is an error, bad connections one line.

viser silently moves to the next free port when the asked one is taken (so a second
``langfield view`` would answer on 8081 while the user's bookmark shows the first), and
websockets logs a long traceback for every connection that is not a websocket or HTTP
request (a port scanner, a bare TCP health probe). Both are handled here, before viser.
"""

from __future__ import annotations

import errno
import logging
import socket

from langfield.types import LangfieldError

WEBSOCKET_LOGGERS = ("websockets.server", "websockets")
"""Loggers websockets reports failed handshakes on."""


def check_port_free(host: str, port: int) -> None:
    """LangfieldError with a one-line reason when ``host:port`` cannot be bound (port 0 always can)."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise LangfieldError(f"cannot bind the viewer to {host}:{port}: unknown host ({e.strerror})") from None
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as s:
            # as asyncio's server does: a port only in TIME_WAIT from an earlier run is free
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(address)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise LangfieldError(
                        f"port {port} on {host} is already in use (another viewer?): stop it, pick another "
                        f"--port, or use --port 0 for any free port") from None
                raise LangfieldError(f"cannot bind the viewer to {host}:{port}: {e.strerror or e}") from None


class OneLineConnectionErrors(logging.Filter):
    """Turns websockets' traceback for a bad connection into one line: ``viewer: bad connection (...)``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            cause = exc.__cause__ or exc.__context__
            why = f"{type(exc).__name__}: {exc}"
            if cause is not None:
                why += f" ({type(cause).__name__}: {cause})" if str(cause) else f" ({type(cause).__name__})"
            what = record.getMessage()
            record.msg, record.args = "viewer: ignored a bad connection: %s: %s", (what, why)
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
        return True


_FILTER = OneLineConnectionErrors()


def quiet_connection_errors() -> None:
    """Install the one-line filter on websockets' loggers (idempotent)."""
    for name in WEBSOCKET_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
