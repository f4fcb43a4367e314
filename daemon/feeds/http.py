"""GET a JSON body over HTTP(S), for the REST side of the feeds (news polling, bar backfill).

The standard library's ``urllib`` runs in a worker thread: no new dependency, typed, and the
rates involved (a request a second at most) need no connection pool. Every request has a socket
timeout and an overall deadline, a body size cap, and follows no redirect (a redirect would carry
the secret headers to another host). Anything but a 2xx answer raises a subclass of
:class:`HttpError` that tells the caller what to do: :class:`AuthError` (stop: retrying cannot
help), :class:`RateLimitedError` (wait, at least ``retry_after``), :class:`ServerError` and
:class:`TransportError` (back off, retry), :class:`ClientError` (the request itself is wrong).

Secrets travel in headers only; errors carry the URL with any secret-looking query value masked,
the status, and the error code and message from the body, never the headers.
"""

from __future__ import annotations

import email.utils
import http.client
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any, Final

import anyio
import msgspec

__all__ = [
    "AuthError",
    "ClientError",
    "HttpClient",
    "HttpError",
    "RateLimitedError",
    "ServerError",
    "TransportError",
    "redact",
]

_SECRET_PARAMS: Final = frozenset({"apikey", "api_key", "token", "key", "secret", "secret_key"})
_MESSAGE_CHARS: Final = 200


class HttpError(Exception):
    """A request that got no usable answer. ``status`` is 0 when no response arrived; ``code``
    and ``message`` come from the error body when it has them (NewsAPI ``apiKeyInvalid``)."""

    def __init__(
        self,
        url: str,
        status: int,
        reason: str,
        *,
        code: str = "",
        message: str = "",
        retry_after: float | None = None,
    ) -> None:
        text = f"GET {url}: {reason}"
        if code or message:
            text += f" ({code}: {message})" if code else f" ({message})"
        super().__init__(text)
        self.url = url
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


class TransportError(HttpError):
    """No response: refused, reset, timed out, or a body too large."""


class AuthError(HttpError):
    """401/403: the key is wrong, disabled or not entitled."""


class RateLimitedError(HttpError):
    """429: wait (``retry_after`` seconds when the server said so) before the next request."""


class ServerError(HttpError):
    """5xx: the server's trouble; retry later."""


class ClientError(HttpError):
    """Another non-2xx status (400, 404, a redirect): the request is wrong as built."""


def redact(url: str) -> str:
    """``url`` with the value of every secret-looking query parameter masked."""
    parts = urllib.parse.urlsplit(url)
    if not parts.query:
        return url
    query = [
        (name, "***" if name.lower() in _SECRET_PARAMS else value)
        for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, safe=",/*")))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx surfaces as an HTTPError: a ClientError


class _ErrorBody(msgspec.Struct):
    code: str | int | None = None
    message: str | None = None
    error: str | None = None  # Finnhub
    msg: str | None = None


_ERROR_BODY: Final = msgspec.json.Decoder(_ErrorBody)


def _error_details(body: bytes) -> tuple[str, str]:
    try:
        parsed = _ERROR_BODY.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        return "", ""
    code = "" if parsed.code is None else str(parsed.code)
    return code, (parsed.message or parsed.error or parsed.msg or "")[:_MESSAGE_CHARS]


def _retry_after(value: str | None) -> float | None:
    """``Retry-After``: seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


class HttpClient:
    """GETs with fixed headers (the credentials), a timeout and a body cap."""

    def __init__(
        self,
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float = 10.0,
        max_bytes: int = 32 * 2**20,
    ) -> None:
        self._headers = {"Accept": "application/json", "User-Agent": "tickd"} | dict(headers or {})
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._opener = urllib.request.build_opener(_NoRedirect)

    def __repr__(self) -> str:  # never show the headers
        return f"HttpClient(timeout={self.timeout})"

    async def get(self, url: str, params: Mapping[str, str] | None = None) -> bytes:
        """The body of a 2xx answer to ``GET url?params``; raises :class:`HttpError`."""
        if params:
            url = f"{url}?{urllib.parse.urlencode(params, safe=',/')}"
        with anyio.move_on_after(self.timeout) as scope:
            # A worker thread cannot be interrupted: on a deadline or a cancellation it is left
            # to finish on its own, within its socket timeout.
            return await anyio.to_thread.run_sync(self._get, url, abandon_on_cancel=True)
        assert scope.cancelled_caught
        raise TransportError(redact(url), 0, f"no answer within {self.timeout} s")

    def _get(self, url: str) -> bytes:
        request = urllib.request.Request(url, headers=self._headers)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                body: bytes = response.read(self.max_bytes + 1)
        except urllib.error.HTTPError as exc:
            try:
                error = self._status_error(url, exc)
            finally:
                exc.close()
            raise error from None
        except (OSError, http.client.HTTPException) as exc:
            raise TransportError(redact(url), 0, f"{type(exc).__name__}: {exc}") from None
        if len(body) > self.max_bytes:
            raise TransportError(redact(url), 0, f"body larger than {self.max_bytes} bytes")
        return body

    def _status_error(self, url: str, exc: urllib.error.HTTPError) -> HttpError:
        status = exc.code
        try:
            body = exc.read(64 * 1024)
        except (OSError, http.client.HTTPException):
            body = b""
        code, message = _error_details(body)
        retry_after = _retry_after(exc.headers.get("Retry-After")) if exc.headers else None
        cls: type[HttpError]
        if status == 429:
            cls = RateLimitedError
        elif status in (401, 403):
            cls = AuthError
        elif status >= 500:
            cls = ServerError
        else:
            cls = ClientError
        return cls(
            redact(url),
            status,
            f"HTTP {status}",
            code=code,
            message=message,
            retry_after=retry_after,
        )
