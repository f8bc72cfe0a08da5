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
    monkeypatch.setattr(text, "_encoded_directly",
                        lambda encoder, prefix, rows, n: ([[0]] * len(rows), np.zeros(len(rows))))
    assert text.tokenize_with_flags(tokenizer, texts, 16)[0] == \
        [row or [text.pad_token_id(tokenizer)] for row in want_ids]


class _Seen:
    """A Rust tokenizer that records the lengths of the texts it was given, and how it was asked."""

    def __init__(self, encoder):
        self.encoder, self.lengths, self.asked = encoder, [], set()

    def encode_batch(self, texts, **options):
        self.lengths += [len(t) for t in texts]
        self.asked.add("with offsets")
        return self.encoder.encode_batch(texts, **options)

    def encode_batch_fast(self, texts, **options):
        self.lengths += [len(t) for t in texts]
        self.asked.add("without offsets")
        return self.encoder.encode_batch_fast(texts, **options)


def test_a_long_text_is_tokenized_from_a_prefix_with_the_whole_texts_tokens(monkeypatch, tiny_backbone):
    """At max_length 16 a text is tokenized only up to its last space within 96 characters (6 a
    token), and gives the whole text's tokens and cut flag; a prefix that is not cut (mostly spaces)
    is tokenized again whole, and a text without a space in its prefix is tokenized whole. A
    tokenizer that does not split at whitespace first gets whole texts."""
    from featx.featurizers import text

    tokenizer = tiny_backbone.tokenizer
    texts = ["a fine film " * 40, "short", "word" + " " * 200 + "end " * 30, "ünïcödé 漢字 🙂 " * 30, "x" * 500,
             "the cast looks bored\n" * 20]
    want_ids, want_cut = text._encoded(tokenizer, texts, 16)
    monkeypatch.setattr(text, "_DIRECT", text.weakref.WeakKeyDictionary())
    encoder, prefix = text._direct_encoder(tokenizer, 16, texts)
    assert prefix == 6 * 16
    seen = text._DIRECT[tokenizer][16] = (_Seen(encoder), prefix)
    ids, cut = text.tokenize_with_flags(tokenizer, texts, 16)
    assert ids == want_ids and cut.tolist() == want_cut.tolist() == [1, 0, 1, 1, 0, 1]
    assert sorted(n for n in seen[0].lengths if n > 96) == [len(texts[2]), len(texts[4])]
    assert seen[0].asked == {"without offsets"}  # featx reads no character offsets: the tokenizer computes none
    monkeypatch.setattr(text, "_DIRECT", text.weakref.WeakKeyDictionary())
    monkeypatch.setattr(text, "_SPLITS_AT_WHITESPACE", set())
    assert text._direct_encoder(tokenizer, 16, texts)[1] is None
