"""NewsAPI (newsapi.org) ``/v2/everything`` and ``/v2/top-headlines`` bodies, both ways.

Articles have no id: the URL identifies one. Most fields may be ``null``; they become ``""``.
An error body becomes an :class:`ApiError` message (the poller decides whether to back off).
"""

from collections.abc import Sequence
from typing import Any, Final

import msgspec
from msgspec import Struct

from .errors import DECODE_ERRORS, Decoded, DecodeError, excerpt
from .schema import ApiError, News
from .timestamps import TimestampError, format_rfc3339_ns, parse_rfc3339_ns

__all__ = ["decode_articles", "encode_articles", "encode_error"]

SOURCE: Final = "newsapi"


class _Body(Struct, kw_only=True):
    status: str
    articles: list[msgspec.Raw] = []
    totalResults: int | None = None  # noqa: N815 - wire name
    code: str | None = None
    message: str | None = None


class _ArticleSource(Struct, kw_only=True):
    id: str | None = None
    name: str | None = None


class _Article(Struct, kw_only=True):
    url: str
    publishedAt: str  # noqa: N815 - wire name
    title: str | None = None
    source: _ArticleSource | None = None
    author: str | None = None
    description: str | None = None
    urlToImage: str | None = None  # noqa: N815 - wire name
    content: str | None = None


_BODY: Final = msgspec.json.Decoder(_Body)
_ARTICLE: Final = msgspec.json.Decoder(_Article)


def decode_articles(body: bytes | str, ts_recv: int = 0) -> Decoded:
    """Decode a response body: the articles as :class:`News`, or one :class:`ApiError`."""
    result = Decoded()
    try:
        envelope = _BODY.decode(body)
    except DECODE_ERRORS as exc:
        result.errors.append(
            DecodeError(source=SOURCE, reason=f"not a NewsAPI body: {exc}", excerpt=excerpt(body))
        )
        return result
    if envelope.status != "ok":
        result.messages.append(
            ApiError(
                provider=SOURCE,
                code=envelope.status if envelope.code is None else envelope.code,
                message=envelope.message or "",
            )
        )
        return result
    for index, raw in enumerate(envelope.articles):
        try:
            article = _ARTICLE.decode(raw)
            ts = parse_rfc3339_ns(article.publishedAt)
        except (*DECODE_ERRORS, TimestampError) as exc:
            result.errors.append(
                DecodeError(
                    source=SOURCE, reason=f"article: {exc}", excerpt=excerpt(raw), index=index
                )
            )
            continue
        result.messages.append(
            News(
                provider="newsapi",
                id=article.url,
                ts_event=ts,
                ts_updated=ts,
                headline=article.title or "",
                summary=article.description or "",
                author=article.author or "",
                url=article.url,
                content=article.content or "",
                source=(article.source.name or "") if article.source else "",
                image=article.urlToImage or "",
                ts_recv=ts_recv,
            )
        )
    return result


def _or_null(text: str) -> str | None:
    return text or None


def encode_articles(news: Sequence[News], total_results: int | None = None) -> bytes:
    """An ``{"status": "ok", ...}`` body holding ``news`` (empty text fields become ``null``)."""
    articles: list[dict[str, Any]] = []
    for item in news:
        if item.id != item.url:
            raise ValueError(f"a NewsAPI article is identified by its url; id={item.id!r}")
        articles.append(
            {
                "source": {"id": None, "name": _or_null(item.source)},
                "author": _or_null(item.author),
                "title": _or_null(item.headline),
                "description": _or_null(item.summary),
                "url": item.url,
                "urlToImage": _or_null(item.image),
                "publishedAt": format_rfc3339_ns(item.ts_event),
                "content": _or_null(item.content),
            }
        )
    return msgspec.json.encode(
        {
            "status": "ok",
            "totalResults": len(articles) if total_results is None else total_results,
            "articles": articles,
        }
    )


def encode_error(error: ApiError) -> bytes:
    """An ``{"status": "error", ...}`` body."""
    return msgspec.json.encode({"status": "error", "code": error.code, "message": error.message})
