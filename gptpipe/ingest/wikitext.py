"""Wikitext -> plain prose, with hand-written regex and scanning passes (no full parser).

A full parser (mwparserfromhell) builds a node tree per page and is an order of magnitude too
slow for whole dumps; prose extraction only needs markup *removed*, which a fixed sequence of
passes does in C-speed regex scans. The order matters:

1. HTML comments (they may hide any other markup);
2. elements that never hold prose, with their content (`<ref>`, `<math>`, `<gallery>`, ...);
3. templates `{{...}}` (nested; infoboxes span lines) then tables `{| ... |}` (nested); templates
   first because `|}}` closes a template, not a table, as in MediaWiki's own preprocessor;
4. links: files/images (captions may hold links, so matched by nesting), categories and
   interlanguage links dropped; `[[a|b]]` -> b, `[[a]]` -> a; `[http://x label]` -> label;
5. bold/italic quotes, the remaining HTML tags (their text kept), magic words, list markers;
6. HTML entities (last, so `&lt;ref&gt;` written in an article stays text, not a tag);
7. whitespace; then sections: "References", "See also", ... are dropped with their subsections,
   headings whose section ended up empty are dropped, the others kept as their text on a line
   of their own (they name the topic of what follows, which is useful context for a language
   model, and cost a few characters).

Everything here is a pure function on `str`. `markup_leaks` is the leakage measure used by the
tests and the benchmark.
"""

from __future__ import annotations

import html
import re
from typing import Callable

_COMMENT_RE = re.compile(r"<!--.*?(?:-->|\Z)", re.S)

# Elements whose content is never prose (citations, formulas, code, image lists, ...): removed
# with everything inside. Self-closing forms (`<ref name="x" />`) too.
# fmt: off
_DROP_ELEMENTS = (
    "ref", "references", "gallery", "math", "chem", "ce", "syntaxhighlight", "source", "pre",
    "timeline", "imagemap", "score", "hiero", "graph", "mapframe", "maplink", "templatedata",
    "inputbox", "categorytree", "includeonly", "noinclude", "table", "indicator",
)
# fmt: on
# The body is scanned as "no '<', or a '<' that does not close the element" (an unrolled loop),
# much faster in `re` than a lazy `.*?` that tries the closing tag at every character.
_DROP_RE = re.compile(
    r"<(%s)\b[^>]*?(?:/\s*>|>[^<]*(?:<(?!/\1\s*>)[^<]*)*</\1\s*>)"
    % "|".join(sorted(_DROP_ELEMENTS, key=len, reverse=True)),
    re.I,
)

# HTML and extension tags whose *text* is prose: only the tags go. The dropped elements are
# listed too, for their stray tags (an unclosed `<ref name=x>`).
# fmt: off
_KEEP_TEXT_TAGS = (
    "abbr", "b", "bdi", "bdo", "big", "blockquote", "caption", "center", "cite", "code", "dd",
    "del", "dfn", "div", "dl", "dt", "em", "font", "h[1-6]", "hr", "i", "ins", "kbd", "li",
    "mark", "nowiki", "ol", "onlyinclude", "p", "poem", "q", "rb", "rp", "rt", "ruby", "s",
    "samp", "section", "small", "span", "strike", "strong", "sub", "sup", "tbody", "td", "th",
    "thead", "tr", "tt", "u", "ul", "var", "wbr", "ref", "references", "includeonly",
    "noinclude", "math", "gallery", "pre", "source",
)
# fmt: on
_TAG_RE = re.compile(r"</?(?:%s)\b[^<>]*>" % "|".join(_KEEP_TEXT_TAGS), re.I)
_BR_RE = re.compile(r"<br\s*/?\s*>|</br\s*>", re.I)

# A few inline templates are words of the sentence ("at {{convert|2942|m|ft}}", "{{lang|fr|
# Roman}}"); dropping them would leave "at ," behind, so they become their text.
_INLINE_NAMES = r"\s*(convert|cvt|lang|nowrap|nobr|nihongo)\s*\|"
_INLINE_TEMPLATE_RE = re.compile(r"\{\{%s([^{}]*)\}\}" % _INLINE_NAMES, re.I)
# The other innermost templates, removed repeatedly (from the inside out).
_TEMPLATE_INNER_RE = re.compile(r"\{\{(?!%s)[^{}]*\}\}" % _INLINE_NAMES, re.I)
_RANGE_WORDS = frozenset({"to", "-", "–", "and", "or", "by", "x", "×", "+"})
_TEMPLATE_TOKEN_RE = re.compile(r"\{\{|\}\}")
# A template's content (its inner templates already replaced) when it is an inline one.
_INLINE_CONTENT_RE = re.compile(r"%s(.*)" % _INLINE_NAMES, re.I | re.S)
# Line-level patterns start with a literal "\n" (the text is framed by newlines), which `re`
# finds fast; patterns starting with `^` or a character class are tried at every character.
# MediaWiki opens tables only at a line start (after indentation colons) and closes them at a
# line start; `|}` elsewhere (as in `{{n/a|}}`) is not a table end.
_TABLE_TOKEN_RE = re.compile(r"\n[ \t:]*(\{\|)|\n[ \t]*(\|\})")

_FILE_LINK_RE = re.compile(r"\[\[[ \t]*:?[ \t]*(?:file|image|media)[ \t]*:", re.I)
_LINK_TOKEN_RE = re.compile(r"\[\[|\]\]")
_CATEGORY_RE = re.compile(r"\[\[[ \t]*:?[ \t]*category[ \t]*:[^\[\]]*\]\]", re.I)
# Interlanguage links (`[[de:Foo]]`) render in the sidebar, not in the text. Interwiki prefixes
# of the same shape (`[[wikt:foo]]`, `[[voy:x]]`) render inline, so they are kept as links.
_INTERLANGUAGE_RE = re.compile(
    r"\[\[(?!(?:mw|voy|wikt|meta|nost|mediawiki|commons|species|wikipedia|wikisource|wikiquote"
    r"|wikibooks|wikinews|wikiversity|wikivoyage|wiktionary|wikidata)\s*:)"
    r"(?:[a-z]{2,3}(?:-[a-z0-9]+)*|simple)\s*:[^\[\]|\n]*\]\]"
)
_PIPE_TRICK_RE = re.compile(r"\[\[:?([^\[\]|]*)\|\]\]")
# The target and pipe of `[[target|label]]`: removing them, and then every `[[`/`]]`, leaves a
# link's label, or its target when it has none. Substituting without group references keeps
# `re.sub` in C for the many links; `str.replace` beats a regex for the brackets.
_LINK_TARGET_RE = re.compile(r"\[\[[^\[\]|\n]*\|")
_EXTERNAL_LINK_RE = re.compile(
    r"\[(?:https?://|ftp://|//|mailto:|news:|irc://)[^\s\[\]]*[ \t]*([^\[\]\n]*)\]", re.I
)

_QUOTES_RE = re.compile(r"''+")
_MAGIC_WORD_RE = re.compile(r"__[A-Z]+__")
_LIST_MARKER_RE = re.compile(r"\n[*#:;]+ ?")
_RULE_RE = re.compile(r"\n----+")
_MULTI_SPACE_RE = re.compile(r"  +")
_NO_WORD_LINE_RE = re.compile(r"\n[^\w\n]+(?=\n)")  # leftovers like "()" or "," of templates
_EMPTY_PARENS_RE = re.compile(r"\([ ,;:.]*\)")
_BLANK_LINES_RE = re.compile(r"\n\n\n+")
_HEADING_RE = re.compile(r"\n(={1,6})[ \t]*([^\n]+?)[ \t]*(={1,6})[ \t]*(?=\n)")
# Spaces other than " " that are common in articles (tab, no-break, thin, narrow no-break);
# searching for each with `in` is much faster than a character-class regex.
_ODD_SPACES = ("\t", "\xa0", "\u2009", "\u202f", "\u2002", "\u2003")

# Sections of references and pointers elsewhere, not prose (title compared case-insensitively).
# fmt: off
DROP_SECTIONS = frozenset({
    "see also", "references", "external links", "further reading", "notes", "footnotes",
    "notes and references", "references and notes", "citations", "sources", "bibliography",
    "works cited", "general references", "related pages", "other websites", "gallery",
})
# fmt: on

_REDIRECT_RE = re.compile(r"\s*#redirect\b", re.I)
# The templates that mark a disambiguation page ({{disambiguation}}, {{dab}}, {{hndis}}, ...),
# optionally with parameters or a "cleanup" suffix.
# fmt: off
_DISAMBIG_TEMPLATES = (
    "disambiguation", "disambig", "disamb", "dab", "dbig", "hndis", "geodis", "numberdis",
    "schooldis", "roaddis", "hospitaldis", "caselawdis", "callsigndis", "mil-unit-dis",
    "mathdab", "letter-numbercombdisambig", "letter-number combination disambiguation",
    "chinese title disambiguation", "species latin name disambiguation",
    "genus disambiguation", "place name disambiguation",
)
# fmt: on
_DISAMBIG_RE = re.compile(
    r"\{\{\s*(?:%s)(?:[ _-]cleanup)?\s*(?:\||\}\})"
    % "|".join(re.escape(t).replace(r"\ ", "[ _]") for t in _DISAMBIG_TEMPLATES),
    re.I,
)

_LEAK_RE = re.compile(
    r"\{\{|\}\}|\[\[|\]\]|<ref|\|-|\{\||\|\}|''|Category:|File:|thumb\||<!--"
    r"|</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>"
    r"|&(?:[A-Za-z][A-Za-z0-9]{1,31}|#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6});"
)


def is_redirect(wikitext: str) -> bool:
    """Whether the text is a redirect (`#REDIRECT [[Target]]`, any case)."""
    return _REDIRECT_RE.match(wikitext) is not None


def is_disambiguation(title: str, wikitext: str) -> bool:
    """Whether the page is a disambiguation page, by its title or its templates."""
    return title.endswith("(disambiguation)") or _DISAMBIG_RE.search(wikitext) is not None


def to_prose(wikitext: str) -> str:
    """The readable prose of one article's wikitext: paragraphs separated by one blank line."""
    text = "\n" + wikitext + "\n"  # every line, the first and last too, starts/ends with "\n"
    # Each pass is guarded by a one-character `in` (memchr) before any longer one: a pass that
    # would find nothing then costs a fast scan instead of a regex scan or a slow 2-char search.
    if "<" in text:
        if "<!--" in text:
            text = _COMMENT_RE.sub("", text)
        text = _DROP_RE.sub("", text)
    if "{" in text:
        if "{{" in text or "}}" in text:
            text = remove_templates(text)
        if "{|" in text:
            text = remove_tables(text)
    elif "}" in text and "}}" in text:
        text = remove_templates(text)
    if "[" in text:
        text = _convert_links(text)
    if "'" in text and "''" in text:
        text = _QUOTES_RE.sub("", text)
    if "<" in text:
        text = _BR_RE.sub("\n", text)
        text = _TAG_RE.sub("", text)
    if "_" in text and "__" in text:
        text = _MAGIC_WORD_RE.sub("", text)
    if "&" in text:
        text = html.unescape(text)
    return _sections(_normalise_space(text))


def remove_templates(text: str) -> str:
    """Drop every `{{...}}` (nested), but keep the words of a few inline ones (`convert`,
    `lang`, `nowrap`, `nihongo`); an unclosed one is dropped up to the next blank line."""
    fast = _remove_balanced_templates(text)
    return _remove_templates_iteratively(text) if fast is None else fast


def _remove_balanced_templates(text: str) -> str | None:
    """`remove_templates` by splitting at `{{` and `}}`, for text whose templates all close,
    nest at most 8 deep and hold no single brace (tables' `{|` and `|}` outside them are
    fine): nearly every article. None for other text.

    Each template's value is computed from its content once its inner templates have theirs,
    which is what the iterative, innermost-first passes compute on such text, without their
    repeated full-text regex scans.
    """
    stack: list[list[str]] = [[]]  # the pieces of each open template, outermost first
    for i, chunk in enumerate(text.split("{{")):
        if i:
            stack.append([])
            if len(stack) > 9:
                return None
        for j, piece in enumerate(chunk.split("}}")):
            if j:
                if len(stack) == 1:  # a stray `}}`
                    return None
                content = "".join(stack.pop())
                inline = _INLINE_CONTENT_RE.match(content)
                stack[-1].append(_inline_words(*inline.groups()) if inline else "")
            if (len(stack) > 1 and ("{" in piece or "}" in piece)) or (j and piece[:1] == "}"):
                return None  # `{{{param}}}`, `{|` in a template, `}}}`: the passes decide
            stack[-1].append(piece)
    return "".join(stack[0]) if len(stack) == 1 else None


def _remove_templates_iteratively(text: str) -> str:
    for _ in range(8):  # innermost first, in C; real nesting rarely goes beyond 4
        text, inline = _INLINE_TEMPLATE_RE.subn(_inline_template, text)
        text, removed = _TEMPLATE_INNER_RE.subn("", text)
        if not (inline or removed) or "{{" not in text:
            break
    if "{{" not in text and "}}" not in text:
        return text
    return _remove_nested(text, _TEMPLATE_TOKEN_RE, lambda m: m.group() == "{{", _to_blank_line)


def _inline_template(m: re.Match) -> str:
    return _inline_words(m.group(1), m.group(2))


def _inline_words(name: str, args: str) -> str:
    """The text of an inline template: `{{convert|5|to|10|km|mi}}` -> "5 to 10 km"."""
    name = name.lower()
    params = [p.strip() for p in args.split("|") if "=" not in p]
    if name in ("convert", "cvt"):
        words = params[:2]
        while len(params) > len(words) + 1 and words[-1] in _RANGE_WORDS:
            words += params[len(words) : len(words) + 2]
        return " ".join(words)
    if name == "lang":
        return params[1] if len(params) > 1 else ""
    if name == "nihongo":
        return params[0] if params else ""
    return "|".join(params)


def remove_tables(text: str) -> str:
    """Drop every `{| ... |}` (nested, each at a line start after a "\\n"); an unclosed one runs
    to the next heading, or the end."""
    return _remove_nested(text, _TABLE_TOKEN_RE, lambda m: m.group(1) is not None, _to_heading)


def _to_blank_line(text: str, start: int) -> int:
    end = text.find("\n\n", start)
    return len(text) if end < 0 else end


def _to_heading(text: str, start: int) -> int:
    end = text.find("\n=", start + 1)
    return len(text) if end < 0 else end


def _remove_nested(
    text: str,
    token_re: re.Pattern,
    is_open: Callable[[re.Match], bool],
    unclosed_end: Callable[[str, int], int],
) -> str:
    """Remove balanced open/close spans found by `token_re`; stray closers are removed too.

    An opener left unclosed at the end is cut up to `unclosed_end(text, start)`, and the rest
    is scanned again (it may hold further, well-formed spans).
    """
    out: list[str] = []
    pos = 0
    while True:
        depth, keep_from, start = 0, pos, pos
        for m in token_re.finditer(text, pos):
            if is_open(m):
                if depth == 0:
                    out.append(text[keep_from : m.start()])
                    start = m.start()
                depth += 1
            elif depth:
                depth -= 1
                if depth == 0:
                    keep_from = m.end()
            else:
                out.append(text[keep_from : m.start()])
                keep_from = m.end()
        if depth == 0:
            out.append(text[keep_from:])
            return "".join(out)
        pos = unclosed_end(text, start)


def _remove_file_links(text: str) -> str:
    """Drop `[[File:...]]`/`[[Image:...]]`, whose captions may hold nested `[[links]]`."""
    out: list[str] = []
    pos = 0
    while (m := _FILE_LINK_RE.search(text, pos)) is not None:
        out.append(text[pos : m.start()])
        depth, end = 1, -1
        for tok in _LINK_TOKEN_RE.finditer(text, m.end()):
            depth += 1 if tok.group() == "[[" else -1
            if depth == 0:
                end = tok.end()
                break
        if end < 0:  # unclosed: a caption never spans lines, so cut to the line's end
            nl = text.find("\n", m.end())
            end = len(text) if nl < 0 else nl
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _convert_links(text: str) -> str:
    if "[[" in text:
        if _FILE_LINK_RE.search(text):
            text = _remove_file_links(text)
        text = _CATEGORY_RE.sub("", text)
        text = _INTERLANGUAGE_RE.sub("", text)
        if "|]]" in text:
            text = _PIPE_TRICK_RE.sub(r"\1", text)
        text = _LINK_TARGET_RE.sub("", text)
        text = text.replace("[[:", "").replace("[[", "").replace("]]", "")
    if "[" in text:
        text = _EXTERNAL_LINK_RE.sub(r"\1", text)
    return text


def _normalise_space(text: str) -> str:
    """One space between words, none at line edges, at most one blank line in a row; the
    result is still framed by newlines."""
    if "(" in text:
        text = _EMPTY_PARENS_RE.sub("", text)
    for space in _ODD_SPACES:
        if space in text:
            text = text.replace(space, " ")
    if "  " in text:
        text = _MULTI_SPACE_RE.sub(" ", text)
    text = text.replace(" \n", "\n").replace("\n ", "\n")
    text = _LIST_MARKER_RE.sub("\n", text)
    if "\n----" in text:
        text = _RULE_RE.sub("\n", text)
    # Removed templates and references leave " ," and " ." behind ("born {{date}}, in").
    text = text.replace(" ,", ",").replace(" ;", ";").replace(" .\n", ".\n").replace(" . ", ". ")
    text = _NO_WORD_LINE_RE.sub("\n", text)
    return _BLANK_LINES_RE.sub("\n\n", text)


def _sections(text: str) -> str:
    """Drop unwanted and empty sections; headings become paragraphs of their own."""
    parts = _HEADING_RE.split(text)
    # parts = [lead, open, title, close, body, open, title, close, body, ...]
    lead = parts[0].strip()
    heads = [
        (min(len(parts[i]), len(parts[i + 2])), parts[i + 1].strip(" ="), parts[i + 3].strip())
        for i in range(1, len(parts), 4)
    ]
    blocks = [lead] if lead else []
    skip_level = 0  # inside a dropped section: skip until a heading of this level or higher
    for i, (level, title, body) in enumerate(heads):
        if skip_level and level > skip_level:
            continue
        skip_level = 0
        if title.casefold() in DROP_SECTIONS:
            skip_level = level
            continue
        if _has_content(heads, i):
            blocks.append(f"{title}\n\n{body}" if body else title)
    return "\n\n".join(blocks)


def _has_content(heads: list[tuple[int, str, str]], i: int) -> bool:
    """Whether section `i` or one of its subsections (not a dropped one) has a body."""
    level = heads[i][0]
    if heads[i][2]:
        return True
    for sub_level, title, body in heads[i + 1 :]:
        if sub_level <= level:
            return False
        if body and title.casefold() not in DROP_SECTIONS:
            return True
    return False


def markup_leaks(text: str) -> list[str]:
    """The markup fragments left in `text` (empty for clean prose); at most the first 20."""
    return [m.group() for _, m in zip(range(20), _LEAK_RE.finditer(text))]


def leakage_rate(texts) -> float:
    """Share of `texts` (articles) holding any markup fragment; 0.0 for no texts."""
    n = bad = 0
    for text in texts:
        n += 1
        bad += _LEAK_RE.search(text) is not None
    return bad / n if n else 0.0
