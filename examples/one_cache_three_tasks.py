"""One cache, three tasks: a sentiment head, a rating regressor and a multi-label emotion head.

    python examples/one_cache_three_tasks.py                     # 2,000 IMDB reviews, 4,000 GoEmotions comments
    python examples/one_cache_three_tasks.py --rows 400 -o /tmp/three-tasks

The expensive part of a frozen-backbone pipeline is the extraction: every row through the
transformer once. Everything after it is cheap, so one cache should answer every question its
rows can answer. Here one IMDB extraction trains a sentiment classifier (and 200 more, one per C,
fitted together in seconds), and then, relabelled with the reviews' 1-10 ratings (no model runs
again; the vectors are not even copied), a rating regressor. A GoEmotions extraction trains a
multi-label head, whose 28 per-label thresholds are chosen on the dev split. Each head becomes a
predictor that takes raw text.

Takes about two minutes on 2 CPU cores. Everything it writes goes under -o; the data comes from
../shared/data (or $FEATX_DATA).
"""
import argparse
import gzip
import json
import os
import time
from pathlib import Path

import numpy as np

import featx
from featx.data import open_input
from featx.train import HeadSpec, train_heads

DATA = Path(os.environ.get("FEATX_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
REVIEWS = ["A gorgeous, moving film with a cast at the top of its game. I loved every minute.",
           "Dull, clumsy and far too long. I wanted my two hours back."]
COMMENTS = ["Thank you so much, this made my day!", "Wow, I did not see that coming at all.",
            "That is so sad, I am sorry for your loss."]


def imdb_subset(path: Path, split: str, rows: int, seed: int) -> Path:
    """A seeded random subset of IMDB's `split` (the file is ordered by label), as JSON lines."""
    with gzip.open(DATA / "imdb" / f"{split}.jsonl.gz", "rt", encoding="utf-8") as f:
        reviews = [json.loads(line) for line in f]
    keep = np.sort(np.random.default_rng(seed).choice(len(reviews), size=min(rows, len(reviews)), replace=False))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(reviews[i]) + "\n" for i in keep), encoding="utf-8")
    return path


def goemotions_subset(path: Path, split: str, rows: int) -> Path:
    """The first `rows` comments of a GoEmotions split (text, comma-separated label ids, comment id)."""
    lines = (DATA / "goemotions" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[:rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000, help="IMDB training reviews (test: a quarter of it; "
                                                               "GoEmotions: twice it)")
    parser.add_argument("-o", "--output", type=Path, default=Path("three-tasks"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = args.output

    # 1. Extract IMDB once, with the sentiment labels (reviews cut at 256 tokens, MiniLM's own embedding).
    imdb = {split: imdb_subset(out / "imdb" / f"{split}.jsonl", split, args.rows if split == "train" else args.rows // 4,
                               args.seed) for split in ("train", "test")}
    sentiment = {split: featx.extract(path, out / "imdb" / f"{split}.h5", max_length=256, progress=False,
                                      label_names=["negative", "positive"]) for split, path in imdb.items()}

    # 2. Task one, single-label: sentiment. Validation is carved from train (10 %, seeded), as featx train does.
    head = featx.train_head(sentiment["train"], "logreg", seed=args.seed)
    print(f"sentiment   logreg  test accuracy {head.evaluate(sentiment['test'])['accuracy']:.4f}")
    sentiment_predictor = featx.Predictor(head).save(out / "predictors" / "sentiment")

    # 2b. Many heads on the same cache cost little more than one: 200 logreg heads, one per C, are
    #     fitted together (one lockstep solver, warm starts along the C path), as `featx train --grid` does.
    started = time.perf_counter()
    grid = [HeadSpec.parse(f"logreg:C={C:.3g}") for C in np.logspace(-4, 3, 200)]
    heads, rows = train_heads(sentiment["train"], grid, seed=args.seed)
    best = max(rows, key=lambda row: row["val_score"])
    print(f"sentiment   {len(heads)} logreg heads in {time.perf_counter() - started:.1f} s, best on validation "
          f"{best['chosen']}: val accuracy {best['val_accuracy']:.4f}")

    # 3. Task two, regression, on the same cache: read the ratings from the same files. Every row's text is
    #    checked against the store's; the new stores point at the old vectors (HDF5 virtual datasets).
    rating = {split: featx.open_store(featx.relabel_store(out / "imdb" / f"{split}.h5",
                                                          open_input(path, target="rating"),
                                                          out / "imdb" / f"{split}-rating.h5"))
              for split, path in imdb.items()}
    regressor = featx.train_head(rating["train"], "ridge", seed=args.seed)
    scores = regressor.evaluate(rating["test"])
    print(f"rating      ridge   test Spearman {scores['mean_spearman']:.4f}, RMSE {scores['mean_rmse']:.2f} stars")
    rating_predictor = featx.Predictor(regressor).save(out / "predictors" / "rating")

    # 4. Task three, multi-label: GoEmotions' 28 emotions, label ids split on commas, named by emotions.txt.
    read = {"text_column": "0", "label_column": "1", "multi_label": ",",
            "label_names": DATA / "goemotions" / "emotions.txt"}
    emotions = {split: featx.extract(open_input(goemotions_subset(out / "goemotions" / f"{split}.tsv", split,
                                                                  2 * args.rows if split == "train" else args.rows),
                                                header=False, **read), out / "goemotions" / f"{split}.h5",
                                     progress=False) for split in ("train", "dev")}
    tagger = featx.train_head(emotions["train"], "logreg", val=emotions["dev"], seed=args.seed)
    val = tagger.evaluate(emotions["dev"])
    print(f"emotions    logreg  dev macro-F1 {val['macro_f1']:.4f}, micro-F1 {val['micro_f1']:.4f} "
          "(thresholds chosen on dev)")
    emotion_predictor = featx.Predictor(tagger).save(out / "predictors" / "emotions")

    # 5. Each predictor takes raw text: a class, the numbers, or a set of labels.
    print("sentiment:", dict(zip(REVIEWS, featx.load_predictor(sentiment_predictor).predict(REVIEWS))))
    stars = featx.load_predictor(rating_predictor).predict(REVIEWS)[:, 0]
    print("rating:", {review[:24]: round(float(value), 1) for review, value in zip(REVIEWS, stars)})
    print("emotions:", {text: list(labels) for text, labels in
                        zip(COMMENTS, featx.load_predictor(emotion_predictor).predict(COMMENTS))})
    for store in [*sentiment.values(), *rating.values(), *emotions.values()]:
        store.close()


if __name__ == "__main__":
    main()
