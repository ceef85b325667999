"""The fixed corpus (bench/corpus.py): plans, estimates and exports are byte-identical to the kept
digests. The suite checks a sample of the model x target pairs and every llama.cpp comparison row;
`python -m bench.corpus` checks all 1080 pairs (a refactor runs it before it lands)."""

from __future__ import annotations

import json

from bench import corpus


def test_a_sample_of_the_corpus_is_byte_identical_to_the_kept_digests():
    with open(corpus.DIGESTS) as f:
        kept = json.load(f)
    got = corpus.groups(corpus.run(every=540, workers=2))
    assert sum(k.startswith("pair/") for k in got) >= 2 and sum(k.startswith("llama.cpp/") for k in got) > 300
    assert corpus.changes(got, kept) == []


def test_a_moved_digest_is_reported():
    assert corpus.changes({"pair/a/b": "1", "pair/c/d": "2"}, {"pair/a/b": "0"}) == ["changed: pair/a/b",
                                                                                     "new: pair/c/d"]
