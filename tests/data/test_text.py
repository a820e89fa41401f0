from rayapp.data._text import chunk_spans, clean_text, count_words, passage_text


def test_clean_text_rules():
    raw = "Ｆｕｌｌwidth\tand  spaces  \r\nline two\r\n\r\n\r\n\r\nnext para   "
    assert clean_text(raw) == "Fullwidth and spaces\nline two\n\nnext para"


def test_chunks_respect_budget_and_spans():
    text = clean_text("Short para one.\n\nShort para two.\n\n" + " ".join(f"w{i}." for i in range(35)))
    spans = chunk_spans(text, 10)
    assert all(n <= 10 for _, _, n in spans)
    # the short paragraphs are packed together and the long one's sentences fill the rest
    assert passage_text(text, *spans[0][:2]) == "Short para one. Short para two. w0. w1. w2. w3."
    assert passage_text(text, *spans[1][:2]) == " ".join(f"w{i}." for i in range(4, 14))
    assert sum(n for *_, n in spans) == count_words(text)
    for s, e, n in spans:
        assert count_words(text[s:e]) == n
    starts = [s for s, _, _ in spans]
    assert starts == sorted(starts)


def test_sentence_longer_than_budget_is_cut():
    text = " ".join(f"w{i}" for i in range(25))
    assert [n for *_, n in chunk_spans(text, 10)] == [10, 10, 5]


def test_paragraph_split_at_sentence_boundaries():
    text = "One two three four five six. Seven eight nine ten eleven twelve."
    spans = chunk_spans(text, 8)
    assert [passage_text(text, s, e) for s, e, _ in spans] == [
        "One two three four five six.", "Seven eight nine ten eleven twelve."]


def test_empty_text_has_no_passages():
    assert chunk_spans("", 100) == []
