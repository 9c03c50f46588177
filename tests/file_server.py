"""A real HTTP file server on 127.0.0.1 for download tests (Python's ``http.server``).

It serves the files of one folder, honours ``Range: bytes=N-`` (206 Partial Content), logs
every request, and can misbehave like a real network: ``cut_after`` closes the connection of the
first response for each file after that many bytes; ``chunk_delay`` slows every 64 KiB.
"""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CHUNK = 64 * 1024


class FileServer:
    """``with FileServer(folder) as server: server.url("name")``; ``server.requests`` lists
    ``(path, range header or None)`` in arrival order."""

    def __init__(self, root: Path, *, cut_after: int | None = None, chunk_delay: float = 0.0):
        self.root = Path(root)
        self.cut_after = cut_after
        self.chunk_delay = chunk_delay
        self.requests: list[tuple[str, str | None]] = []
        self._cut: set[str] = set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server._serve(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        name = handler.path.lstrip("/")
        wanted = handler.headers.get("Range")
        self.requests.append((name, wanted))
        path = self.root / name
        if not path.is_file():
            handler.send_error(404)
            return
        size = path.stat().st_size
        start = int(wanted.removeprefix("bytes=").split("-")[0]) if wanted else 0
        if start >= size > 0:
            handler.send_response(416)
            handler.send_header("Content-Range", f"bytes */{size}")
            handler.end_headers()
            return
        handler.send_response(206 if wanted else 200)
        handler.send_header("Content-Length", str(size - start))
        if wanted:
            handler.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        handler.send_header("Accept-Ranges", "bytes")
        handler.end_headers()
        limit = size - start
        if self.cut_after is not None and name not in self._cut:
            self._cut.add(name)
            limit = min(limit, self.cut_after)
            handler.close_connection = True
        with open(path, "rb") as fh:
            fh.seek(start)
            while limit > 0 and (chunk := fh.read(min(CHUNK, limit))):
                try:
                    handler.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client went away (cancelled)
                limit -= len(chunk)
                if self.chunk_delay:
                    time.sleep(self.chunk_delay)
