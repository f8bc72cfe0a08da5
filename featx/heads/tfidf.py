"""TF-IDF of texts as the hybrid head reads them: fitted once per set of texts, and cached.

The vectorizer is scikit-learn's TfidfVectorizer with `TFIDF_PARAMS` (word 1-2-grams, sublinear
tf, terms in at least 2 texts: the TF-IDF baseline's settings). Fitting it on the texts of a
large store is the dearest part of a hybrid head after its solver (9.5 s for IMDB's 22,500
training reviews on 2 cores), and every hybrid head on the same store fits the same one, so a fit
is kept in ``$FEATX_CACHE/tfidf/<key>/``: the vocabulary, the idf and the fitted texts' own rows.
The key is the sha256 of the fitted texts (each text's sha256, in order), the parameters and
scikit-learn's version. The rows of other texts a head trains with under that fit (its
validation rows) are kept beside it, keyed by the fit and those texts, and read again when its
validation metrics predict those rows (`kept_rows`: 0.8 s of IMDB's head); other rows it predicts
are transformed and not kept.

Each entry is sealed as every featx cache is (featx.caches): a damaged one is computed again and
replaced, with one warning. A cache that cannot be written costs only time: the fit is made in
memory, with one warning naming the folder.

Texts come with their sha256 (`HashedTexts`), and `check_texts_match` pairs them with a store's
rows only when every text's hash is the row's content hash (`MatchedTexts`: checked once a run).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse
import sklearn
from sklearn.feature_extraction.text import TfidfVectorizer

from featx.caches import CacheUnwritable, cache_folder, cached_folder, folder_holds, report_rejected
from featx.errors import FeatxError, FeatxWarning
from featx.store import FeatureStore

TFIDF_PARAMS: dict[str, Any] = {"ngram_range": (1, 2), "sublinear_tf": True, "min_df": 2}
_ROWS = ("data.npy", "indices.npy", "indptr.npy", "shape.npy")
_FIT = ("vocabulary.txt", "idf.npy", *_ROWS)


class HashedTexts(list):  # type: ignore[type-arg]
    """Texts with their sha256 known already (n, 32): the cache's key is made without hashing them."""

    def __init__(self, texts: Sequence[str], hashes: np.ndarray) -> None:
        super().__init__(texts)
        self.hashes = hashes


class TfidfFit:
    """A TfidfVectorizer fitted on some texts, with their rows; `rows_of` gives other texts' rows."""

    def __init__(self, vectorizer: TfidfVectorizer, rows: Any, key: str | None, texts_key: str | None) -> None:
        self.vectorizer, self.rows, self.key, self.texts_key = vectorizer, rows, key, texts_key

    def rows_of(self, texts: Sequence[str]) -> Any:
        """The TF-IDF rows (CSR) of `texts` under this fit: cached for a fit from the cache."""
        if self.key is None:
            return self.vectorizer.transform(texts)
        texts_key = _texts_key(texts)
        if texts_key == self.texts_key:
            return self.rows
        folder = _rows_folder(self.key, texts_key)
        return _cached_rows(folder, lambda: self.vectorizer.transform(texts), f"the TF-IDF rows {folder.name}")


def kept_rows(fit_key: str | None, texts: Sequence[str]) -> Any | None:
    """The rows of `texts` under the cached fit `fit_key` where `rows_of` left them in the cache (a head's
    validation rows, which its metrics predict again); None where they are not there, and for texts whose
    hashes are not known already (rows to predict are not hashed to look for them). A damaged entry is
    reported in one warning, removed and not read."""
    if fit_key is None or not isinstance(texts, HashedTexts):
        return None
    folder = _rows_folder(fit_key, _texts_key(texts))
    if not folder.exists():
        return None
    try:
        if folder_holds(folder, _ROWS):
            return _load_rows(folder)
    except (OSError, ValueError):  # damaged between the check and the read
        pass
    # As cached_folder treats a damaged entry: one warning, the entry removed (rows_of makes it again).
    report_rejected(f"the TF-IDF rows {folder.name}", folder.parent, "the texts were transformed again",
                    kind="tfidf")
    shutil.rmtree(folder, ignore_errors=True)
    return None


def _rows_folder(fit_key: str, texts_key: str) -> Path:
    return cache_folder() / "tfidf" / f"{fit_key}-rows-{texts_key}"


def fit_tfidf(texts: Sequence[str]) -> TfidfFit:
    """TfidfVectorizer(**TFIDF_PARAMS) fitted on `texts`, from the cache when it holds the fit."""
    texts_key = _texts_key(texts)
    recipe = json.dumps({**TFIDF_PARAMS, "sklearn": sklearn.__version__}, sort_keys=True)
    key = hashlib.sha256(f"{texts_key}\n{recipe}".encode()).hexdigest()[:24]
    folder = cache_folder() / "tfidf" / key
    made: dict[str, Any] = {}

    def make(scratch: Path) -> None:
        vectorizer = TfidfVectorizer(**TFIDF_PARAMS)
        made["rows"], made["vectorizer"] = vectorizer.fit_transform(texts).tocsr(), vectorizer
        terms = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get)
        (scratch / "vocabulary.txt").write_text("\n".join(terms), encoding="utf-8")
        np.save(scratch / "idf.npy", vectorizer.idf_)
        _save_rows(scratch, made["rows"])

    try:
        cached_folder(folder, _FIT, make, what=f"the TF-IDF fit {key}", kind="tfidf")
    except CacheUnwritable as e:
        warnings.warn(FeatxWarning(f"{e}; the TF-IDF fit is made in memory this time"), stacklevel=2)
        vectorizer = TfidfVectorizer(**TFIDF_PARAMS)
        return TfidfFit(vectorizer, vectorizer.fit_transform(texts).tocsr(), None, None)
    if made:  # fitted just now: no need to read back what was written
        return TfidfFit(made["vectorizer"], made["rows"], key, texts_key)
    terms = (folder / "vocabulary.txt").read_text(encoding="utf-8")
    return TfidfFit(restored_vectorizer(terms.split("\n") if terms else [], np.load(folder / "idf.npy")),
                    _load_rows(folder), key, texts_key)


def restored_vectorizer(terms: list[str], idf: np.ndarray) -> TfidfVectorizer:
    """A fitted TfidfVectorizer(**TFIDF_PARAMS) from its terms (in column order) and idf."""
    vectorizer = TfidfVectorizer(**TFIDF_PARAMS)
    vectorizer.vocabulary_ = {term: i for i, term in enumerate(terms)}
    vectorizer.idf_ = idf
    return vectorizer


def _texts_key(texts: Sequence[str]) -> str:
    from featx.featurizers.text import text_hashes

    hashes = texts.hashes if isinstance(texts, HashedTexts) else text_hashes(texts)
    return hashlib.sha256(np.ascontiguousarray(hashes, dtype=np.uint8).tobytes()).hexdigest()[:24]


def _cached_rows(folder: Path, transform: Any, what: str) -> Any:
    made: dict[str, Any] = {}

    def make(scratch: Path) -> None:
        made["rows"] = transform().tocsr()
        _save_rows(scratch, made["rows"])

    try:
        cached_folder(folder, _ROWS, make, what=what, kind="tfidf")
    except CacheUnwritable:  # the fit's own warning said so already
        return transform()
    return made["rows"] if made else _load_rows(folder)


def _save_rows(folder: Path, rows: Any) -> None:
    for name, array in (("data", rows.data), ("indices", rows.indices), ("indptr", rows.indptr),
                        ("shape", np.asarray(rows.shape, dtype=np.int64))):
        np.save(folder / f"{name}.npy", array)


def _load_rows(folder: Path) -> Any:
    parts = [np.load(folder / name, allow_pickle=False) for name in _ROWS]
    return scipy.sparse.csr_matrix((parts[0], parts[1], parts[2]), shape=tuple(int(x) for x in parts[3]))


class MatchedTexts(HashedTexts):
    """Texts checked against one store's rows (`key`: its path and fingerprint): checking them
    against that store again hashes nothing, and neither does the TF-IDF cache."""

    def __init__(self, texts: Sequence[str], hashes: np.ndarray, key: tuple[str, str]) -> None:
        super().__init__(texts, hashes)
        self.key = key


def check_texts_match(store: FeatureStore, texts: Sequence[str], name: str) -> MatchedTexts:
    """`texts`, refused unless they are exactly the texts `store`'s rows were made from, in order
    (by each row's content sha256), so a text is never paired with another row's vector. Texts a
    check returned are not hashed again for the same store (a run checks each split's once)."""
    from featx.featurizers.text import text_hashes

    key = (str(store.path), store.fingerprint)
    if isinstance(texts, MatchedTexts) and texts.key == key:
        return texts
    hashes = store.content_sha256
    if len(texts) != len(store) or not np.array_equal(hashes, text_hashes(texts)):
        raise FeatxError(f"{name} does not hold the texts of {store.path} row for row (the rows' content hashes "
                         "differ): give the input the store was extracted from, read with the same columns")
    return MatchedTexts(texts, np.asarray(hashes), key)
