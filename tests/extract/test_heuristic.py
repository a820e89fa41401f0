from rayapp.extract.heuristic import EXTRACTORS, FullPassages, TopSentences, compression_ratio, split_sentences


def test_split_and_compression():
    assert split_sentences("One here. Two there! Three? 4 is last.") == ["One here.", "Two there!", "Three?", "4 is last."]
    assert compression_ratio(["a b c d", "e f"], "a b") == 3.0
    assert compression_ratio(["a"], "") == float("inf")
    full = FullPassages()("q", ["a b.", "c d."])
    assert full.compression == 1.0 and {"full", "top_sentences"} <= set(EXTRACTORS)


def test_top_sentences_picks_the_relevant_one(minilm):
    enc = lambda texts: minilm.encode(texts, normalize_embeddings=True)  # noqa: E731
    passages = ["The Eiffel Tower is in Paris. It opened in 1889.",
                "Bananas are rich in potassium. They grow in the tropics."]
    ev = TopSentences(enc, k=1)("When did the Eiffel Tower open?", passages)
    assert ev.evidence in {"It opened in 1889.", "The Eiffel Tower is in Paris."}
    assert ev.compression > 3 and "top 1 of 4" in ev.rationale
