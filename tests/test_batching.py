import numpy as np
import pytest

from featx.extraction.batching import pad_batch, plan_batches


@pytest.mark.parametrize("budget", [1, 7, 64, 10_000])
def test_plan_covers_every_row_once_within_budget(budget):
    lengths = np.random.default_rng(0).integers(1, 50, size=300)
    batches = plan_batches(lengths, budget)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(300))
    for batch in batches:
        assert len(batch) == 1 or len(batch) * lengths[batch].max() <= budget
    longest_first = [lengths[b].max() for b in batches]
    assert longest_first == sorted(longest_first, reverse=True)


def test_pad_batch_right_and_left():
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_value=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_value=0, pad_left=True)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]



def test_texts_are_tokenized_by_the_rust_tokenizer_itself_as_the_transformers_call_would(monkeypatch, tiny_backbone):
    """featx reads only the ids and the cut flags, so it skips transformers' per-encoding Python
    conversion, once the Rust tokenizer, set to truncate, is seen to give exactly what the call gives."""
    from featx.featurizers import text

    tokenizer = tiny_backbone.tokenizer
    texts = ["a fine film", "", "word " * 300, "ünïcödé 漢字 🙂", "the cast looks bored"] * 3
    want_ids, want_cut = text._encoded(tokenizer, texts, 16)
    calls, real = [], text._encoded
    monkeypatch.setattr(text, "_DIRECT", text.weakref.WeakKeyDictionary())
    monkeypatch.setattr(text, "_encoded", lambda *a: calls.append(1) or real(*a))
    for _ in range(2):
        ids, cut = text.tokenize_with_flags(tokenizer, texts, 16)
        assert ids == [row or [text.pad_token_id(tokenizer)] for row in want_ids]
        assert cut.tolist() == want_cut.tolist() and cut.sum() == 3  # the three 300-word texts
    assert calls == [1]  # the one check; then the Rust tokenizer alone
    # A Rust encoding that differs from the call (made to, here) is never used.
    monkeypatch.setattr(text, "_DIRECT", text.weakref.WeakKeyDictionary())
    monkeypatch.setattr(text, "_encoded_directly", lambda encoder, rows, n: ([[0]] * len(rows), np.zeros(len(rows))))
    assert text.tokenize_with_flags(tokenizer, texts, 16)[0] == \
        [row or [text.pad_token_id(tokenizer)] for row in want_ids]
