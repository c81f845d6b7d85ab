"""NER spans inside tweet markup (URLs, RT @user:, @mentions) or shorter than two characters are not entities."""

from __future__ import annotations

from finetune.markup import drop_markup_entities, markup_ranges


def _span(text: str, surface: str, kind: str = "ORG") -> tuple[int, int, str]:
    start = text.index(surface)
    return (start, start + len(surface), kind)


def test_markup_is_found_with_its_offsets() -> None:
    text = "RT @traderjoe: $AAPL beats, see https://t.co/x1Y2z and www.example.com/a (mail ir@apple.com)"
    found = [text[s:e] for s, e in markup_ranges(text)]
    assert found == ["RT", "@traderjoe", "https://t.co/x1Y2z", "www.example.com/a"]  # not the e-mail's @apple


def test_spans_in_markup_and_one_letter_spans_are_dropped_and_names_kept() -> None:
    text = "RT @Reuters: Apple and Goldman Sachs rally, Tesla slips https://t.co/AbC1 via @WSJ T"
    spans = [_span(text, "RT"), _span(text, "Reuters"), _span(text, "Apple"), _span(text, "Goldman Sachs"),
             _span(text, "Tesla"), _span(text, "t.co"), _span(text, "AbC1"), _span(text, "WSJ"),
             (len(text) - 1, len(text), "ORG")]
    kept = drop_markup_entities(text, spans)
    assert [text[s:e] for s, e, _ in kept] == ["Apple", "Goldman Sachs", "Tesla"]


def test_plain_prose_is_left_alone() -> None:
    text = "RTX Corp and AT&T agree to a deal with 3M in Paris"
    spans = [_span(text, "RTX Corp"), _span(text, "AT&T"), _span(text, "3M"), _span(text, "Paris", "LOC")]
    assert drop_markup_entities(text, spans) == spans
