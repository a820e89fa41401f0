"""The trained-extractor interface, its fallback, and evidence mapped back onto the passages."""

from __future__ import annotations

import pytest

from rayapp.config import ExtractorConfig
from rayapp.extract.lear import read_extractor_output
from rayapp.extract.model import evidence_hits, make_extractor


def test_read_extractor_output_reads_contents_leniently_and_format_strictly():
    assert read_extractor_output("<reason>why</reason><extract>the fact.</extract>") == ("why", "the fact.", True)
    assert read_extractor_output("<reason>why</reason><extract>cut by len") == ("why", "cut by len", False)
    assert read_extractor_output("<reason>why <extract>e</extract>") == ("why", "e", False)
    assert read_extractor_output("<reason>rambling, never closed") == ("rambling, never closed", "", False)
    assert read_extractor_output("no tags") == ("", "", False)


def test_evidence_hits_keep_ids_and_drop_passages_without_evidence():
    hits = [{"id": "a", "text": "Aspirin lowers risk. It is cheap."}, {"id": "b", "text": "Bananas are yellow."},
            {"id": "c", "text": "Trials enrolled 400 patients."}]
    out = evidence_hits(hits, "It is cheap. Trials enrolled 400 patients.")
    assert [(h["id"], h["text"]) for h in out] == [("a", "It is cheap."), ("c", "Trials enrolled 400 patients.")]
    assert evidence_hits(hits, "") == hits


def test_lm_extractor_falls_back_to_the_passages(tiny_lm_dir):
    ex = make_extractor(ExtractorConfig(method="lm", model=tiny_lm_dir, max_tokens=8))
    ev = ex("Does aspirin help?", ["Aspirin lowers risk.", "It is cheap."])
    # a random model writes no <extract>: the passages are kept, and the rationale says so
    assert ev.evidence == "Aspirin lowers risk.\nIt is cheap." and ev.compression == 1.0
    assert ev.rationale.startswith("no evidence extracted")


def test_heuristics_by_name(minilm):
    full = make_extractor(ExtractorConfig(method="full"))
    assert full("q", ["a b", "c"]).compression == 1.0
    top = make_extractor(ExtractorConfig(method="top_sentences", k=1),
                         encode=lambda t: minilm.encode(t, normalize_embeddings=True))
    ev = top("What lowers heart risk?", ["Aspirin lowers heart risk. The sky is blue today."])
    assert ev.evidence == "Aspirin lowers heart risk." and ev.compression == 9 / 4
    assert make_extractor(ExtractorConfig()) is None
    with pytest.raises(ValueError, match="extractor.model: method 'lm' needs"):
        ExtractorConfig(method="lm")


def test_lm_extractor_with_the_scaffold_always_has_evidence(tiny_lm_dir):
    ex = make_extractor(ExtractorConfig(method="lm", model=tiny_lm_dir, max_tokens=8, scaffold=True,
                                        max_reason_tokens=4))
    ev = ex("Does aspirin help?", ["Aspirin lowers risk.", "It is cheap."])
    assert ev.evidence and not ev.rationale.startswith("no evidence extracted")
