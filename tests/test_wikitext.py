"""Wikitext -> prose, one markup feature at a time, on strings."""

from __future__ import annotations

import pytest

from gptpipe.ingest.wikitext import (
    is_disambiguation,
    is_redirect,
    leakage_rate,
    markup_leaks,
    remove_tables,
    remove_templates,
    to_prose,
)


@pytest.mark.parametrize(
    "wikitext, prose",
    [
        # links
        ("A [[France|French]] poet.", "A French poet."),
        ("The [[poet]] and [[bus]]es.", "The poet and buses."),
        ("See [[:Category:Poets|poets]] too.", "See too."),
        ("A [[wikt:flâneur|flâneur]] walks.", "A flâneur walks."),
        ("Go to [http://example.org the site] now.", "Go to the site now."),
        ("A bare [http://example.org] link.", "A bare link."),
        # quotes, entities, tags
        ("'''Bold''' and ''italic'' and '''''both'''''.", "Bold and italic and both."),
        ("AT&amp;T&nbsp;Inc. &mdash; 5&nbsp;&lt;&nbsp;6", "AT&T Inc. — 5 < 6"),
        ('a <small>small</small> <span style="x">span</span> word', "a small span word"),
        ("one<br />two", "one\ntwo"),
        ("__NOTOC__Text here.", "Text here."),
        # removed with their content (a block on lines of its own leaves a paragraph break)
        ('Fact.<ref name="a">{{cite web|url=http://x}}</ref> Next.', "Fact. Next."),
        ('Fact.<ref name="a" /> Next.<ref name=b/>', "Fact. Next."),
        ("Text <!-- hidden [[x]] {{y}} --> more.", "Text more."),
        ("Text <!-- never closed [[x]]", "Text"),
        ("Area <math>\\pi r^2</math>.", "Area."),
        ('Code:\n<syntaxhighlight lang="c">int x;</syntaxhighlight>\nEnd.', "Code:\n\nEnd."),
        ("Pics:\n<gallery>\nFile:A.jpg|a\n</gallery>\nEnd.", "Pics:\n\nEnd."),
        ("[[File:A.jpg|thumb|A [[cat]] on a [[mat|rug]].]]Text.", "Text."),
        ("[[Image:B.png|left|200px]]\nText.", "Text."),
        ("Text.\n[[Category:Poets|Smith]]\n[[de:Dichter]]\n[[zh-min-nan:Si-jîn]]", "Text."),
        # lists
        ("Intro:\n* one\n** two\n# three\n; term : def", "Intro:\none\ntwo\nthree\nterm : def"),
    ],
)
def test_markup(wikitext: str, prose: str) -> None:
    assert to_prose(wikitext) == prose


def test_templates_nested_and_multiline() -> None:
    text = (
        "{{Infobox person\n| name = {{lang|fr|Jean}}\n| born = {{birth date|1900|1|1}}\n"
        "| image = [[File:J.jpg]]\n}}\n'''Jean''' (born {{circa}} 1900) was a [[poet]]."
    )
    assert to_prose(text) == "Jean (born 1900) was a poet."


def test_template_edge_cases() -> None:
    assert remove_templates("a {{x|{{y|{z}}}}} b") == "a } b"  # a single brace is text
    assert remove_templates("a }} b {{c}}") == "a  b "  # a stray closer goes
    # unclosed: dropped up to the next blank line, later templates still removed
    assert remove_templates("a {{x|\n| y = 1\n\nnext {{z}} para") == "a \n\nnext  para"


def test_tables_nested_and_not_closed_by_template_pipes() -> None:
    text = (
        'Before.\n{| class="wikitable"\n|-\n! H1 !! H2\n|-\n| {{n/a|}} || cell\n'
        '|-\n|\n{| class="inner"\n| inner\n|}\n|}\nAfter.'
    )
    assert to_prose(text) == "Before.\nAfter."
    assert remove_tables("\nx\n:{|\n| a\n|}\ny\n") == "\nx\ny\n"


def test_unclosed_table_runs_to_next_heading() -> None:
    text = "Intro.\n{|\n| cell\n|-\n| cell\n== Next ==\nProse here."
    assert to_prose(text) == "Intro.\n\nNext\n\nProse here."


def test_sections_headings_kept_reference_sections_dropped() -> None:
    text = (
        "Lead paragraph.\n\n== History ==\nOld times.\n=== Early ===\nVery old.\n\n"
        "== Gallery of nothing ==\n{{gallery}}\n\n== See also ==\n* [[Other]]\n"
        "=== Sub of see also ===\nStill dropped.\n== References ==\n{{reflist}}\n"
        "== External links ==\n* [http://x.org site]\n== Legacy ==\nStill read.\n"
    )
    assert to_prose(text) == (
        "Lead paragraph.\n\nHistory\n\nOld times.\n\nEarly\n\nVery old.\n\nLegacy\n\nStill read."
    )


def test_empty_section_kept_when_a_subsection_has_text() -> None:
    text = "Lead.\n== Works ==\n=== Novels ===\nMany.\n== Notes ==\n{{reflist}}"
    assert to_prose(text) == "Lead.\n\nWorks\n\nNovels\n\nMany."


def test_whitespace_and_leftovers() -> None:
    text = "  One   two\t three .\n\n\n\nFour ({{lang|x}}) , five.\n{{x}}\n,\n\nSix. "
    assert to_prose(text) == "One two three.\n\nFour, five.\n\nSix."


def test_realistic_article_has_no_leaks() -> None:
    text = (
        "{{Use dmy dates|date=May 2016}}\n{{Infobox country\n|name = X\n|map = "
        "[[File:X.svg|thumb|Map of [[X]]]]\n}}\n'''X''' is a country.<ref>{{cite book|title=Y}}"
        '</ref> It has {{convert|3|km}} of coast.\n\n{| class="wikitable"\n|-\n| a || b\n|}\n'
        "== Culture ==\n<!-- comment -->''Food'' &amp; [[music|songs]].<ref name=\"z\"/>\n"
        "== References ==\n{{reflist}}\n[[Category:Countries]]\n[[fr:X]]"
    )
    prose = to_prose(text)
    assert prose == "X is a country. It has 3 km of coast.\n\nCulture\n\nFood & songs."
    assert markup_leaks(prose) == []


def test_markup_leaks_and_rate() -> None:
    assert markup_leaks("Clean prose, 5 < 6 and a & b.") == []
    leaks = markup_leaks("x {{t}} [[l]] <ref> |- {| ''i'' Category:A File:B thumb| <b> &amp; <!--")
    for frag in (
        "{{",
        "}}",
        "[[",
        "]]",
        "<ref",
        "|-",
        "{|",
        "''",
        "Category:",
        "File:",
        "thumb|",
        "<b>",
        "&amp;",
        "<!--",
    ):
        assert frag in leaks
    assert leakage_rate(["clean", "has {{x}}", "clean", "&nbsp;"]) == 0.5
    assert leakage_rate([]) == 0.0


def test_redirect_and_disambiguation() -> None:
    assert is_redirect("#REDIRECT [[Computer accessibility]]")
    assert is_redirect("  #redirect[[x]]")
    assert not is_redirect("A #REDIRECT in the middle is text.")
    for text in (
        "{{disambiguation}}",
        "{{Disambig|geo}}",
        "{{hndis|name=Smith, John}}",
        "{{ dab }}",
        "{{Geodis}}",
        "{{Letter-Number Combination Disambiguation}}",
        "{{disambiguation cleanup|date=May 2016}}",
    ):
        assert is_disambiguation("Mercury", "Mercury may be:\n" + text), text
    assert is_disambiguation("Mercury (disambiguation)", "")
    assert not is_disambiguation("Mercury", "{{Dablink|x}} {{Infobox planet}} {{dabs}}")


@pytest.mark.parametrize(
    "wikitext, prose",
    [
        ("at {{convert|2942|m|ft}}, the", "at 2942 m, the"),
        ("from {{cvt|5|to|10|km|mi|abbr=on}} wide", "from 5 to 10 km wide"),
        ("{{lang|fr|Le Monde}} is", "Le Monde is"),
        ("on {{nowrap|10 May}} 2001", "on 10 May 2001"),
        ("{{nihongo|Tokyo|東京|Tōkyō}} is", "Tokyo is"),
        ("{{lang|fr|{{nowrap|Le Monde}}}} is", "Le Monde is"),
    ],
)
def test_inline_templates_keep_their_words(wikitext: str, prose: str) -> None:
    assert to_prose(wikitext) == prose


def test_one_pass_template_removal_equals_the_iterative_passes() -> None:
    """The split-based fast path gives what the innermost-first regex passes give, or defers."""
    import random

    from gptpipe.ingest.wikitext import _remove_balanced_templates, _remove_templates_iteratively

    tokens = ["{{", "}}", "{", "}", "|", "a", " ", "\n\n", "lang|fr|", "Convert |1|to|2|m",
              "nowrap|", "nihongo|X|Y", "{|", "|}", "x=1", "{{{", "}}}"]
    rng = random.Random(0)
    fast = 0
    for _ in range(20_000):
        text = "".join(rng.choice(tokens) for _ in range(rng.randint(0, 16)))
        result = _remove_balanced_templates(text)
        if result is not None:
            fast += 1
            assert result == _remove_templates_iteratively(text), text
    assert fast > 4_000  # the fast path is taken, not always deferred
    deep = "a {{x|" * 9 + "b" + "}}" * 9  # deeper than the passes go: deferred
    assert _remove_balanced_templates(deep) is None
    assert _remove_balanced_templates("{{x|" * 8 + "b" + "}}" * 8) == ""
