"""A request body read with a size limit that holds whatever way the body is framed.

`Content-Length` alone is not enough: a chunked upload declares no length, and `request.body()`
would read all of it into memory. The stream is read chunk by chunk and abandoned as soon as the
limit is passed, so at most `limit` bytes are ever held.
"""

from __future__ import annotations

from starlette.requests import Request


class BodyTooLarge(Exception):
    def __init__(self, limit: int):
        super().__init__(f"the body is larger than {limit:,} bytes (ingest.max_body_mb)")
        self.limit = limit


async def read_body(request: Request, limit: int) -> bytearray:
    """The whole body, or BodyTooLarge once it passes `limit` bytes (at once when Content-Length says so)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)  # the fast path: refused before a byte of it is read
    body = bytearray()  # returned as is: a bytes() copy would double the memory at the end
    async for chunk in request.stream():
        if len(body) + len(chunk) > limit:
            raise BodyTooLarge(limit)
        body += chunk
    return body
