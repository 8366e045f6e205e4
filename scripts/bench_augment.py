"""Speed of every augmenter on RT sentences, side by side with nlpaug when it is installed.

    python scripts/bench_augment.py                       # 1,000 RT sentences, n = 4
    python scripts/bench_augment.py --methods contextual,cbert --nlpaug-subset 100 --json bench.json

For each augmenter: ``fit(task)`` is timed on its own (the adapted MLM, CBERT model and POS
vocabulary come from the on-disk cache after the first run; build them first, e.g. with
``augrl augment --method cbert``), a short warm-up call follows, then one ``augment(sentences,
n)`` call is timed: the rate is input sentences per second (each gets n variants).

With nlpaug importable, the same is measured for nlpaug's ``ContextualWordEmbsAug`` (the same
adapted MLM, loaded from its cache folder; substitute, top_k = 100, aug_p = 0.3, its defaults)
and ``SynonymAug`` (WordNet), and the table gives each augmenter's rate as a ratio to nlpaug's
contextual rate. nlpaug takes one list at a time and gives one variant per input, so n variants
are n calls. Two adaptations are needed here and are printed with the results:

* nlpaug 1.1.11's default (``use_custom_api=True``) BERT wrapper calls a tokenizer method that
  transformers 5 removed; ``use_custom_api=False`` (its fill-mask pipeline path) is used.
* SynonymAug POS-tags with NLTK's perceptron tagger, whose data cannot be downloaded offline;
  spaCy's Penn Treebank tagger stands in, and its time is reported so it can be subtracted.

nlpaug's contextual augmenter is slow on a CPU, so it runs on the first ``--nlpaug-subset``
sentences (default 100; 0 = all); the rate is per sentence either way.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from augrl import baselines
from augrl.tasks import load_task

DEFAULT_METHODS = "eda,mask,pos,ngram,tang,contextual,cbert"


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def bench_ours(name: str, task, texts: list[str], labels: list[int], n: int, seed: int) -> dict:
    aug = baselines.get(name, progress=True) if "progress" in baselines.parameters(name) else baselines.get(name)
    start = time.perf_counter()
    aug.fit(task)
    fit_seconds = time.perf_counter() - start
    aug.augment(texts[:8], n=n, labels=labels[:8], seed=seed)  # warm-up (lazy tables, first kernels)
    start = time.perf_counter()
    out = aug.augment(texts, n=n, labels=labels, seed=seed)
    seconds = time.perf_counter() - start
    changed = sum(v != t for t, vs in zip(texts, out) for v in vs) / max(1, n * len(texts))
    row = {"method": name, "sentences": len(texts), "n": n, "seconds": round(seconds, 2),
           "sentences_per_second": len(texts) / seconds, "fit_seconds": round(fit_seconds, 1),
           "changed_rate": round(changed, 3)}
    if hasattr(aug, "describe_mlm"):
        row["mlm"] = aug.describe_mlm()
    return row


def bench_nlpaug_contextual(mlm_dir: str, texts: list[str], n: int) -> dict:
    import nlpaug.augmenter.word as naw

    aug = naw.ContextualWordEmbsAug(model_path=mlm_dir, model_type="bert", action="substitute", top_k=100,
                                    aug_p=0.3, aug_min=1, aug_max=10, device="cpu", use_custom_api=False)
    aug.augment(texts[:2])  # warm-up
    start = time.perf_counter()
    for _ in range(n):
        aug.augment(texts)
    seconds = time.perf_counter() - start
    return {"method": "nlpaug ContextualWordEmbsAug", "sentences": len(texts), "n": n, "seconds": round(seconds, 2),
            "sentences_per_second": len(texts) / seconds, "model": mlm_dir}


def bench_nlpaug_synonym(texts: list[str], n: int) -> dict:
    import nlpaug.augmenter.word as naw
    from nlpaug.model.word_dict import WordNet

    from augrl.baselines.resources import load_wordnet, tag_words

    load_wordnet()  # puts the normalised WordNet on nltk.data.path, where nlpaug looks
    tagging = {"seconds": 0.0}

    def spacy_pos_tag(tokens):
        start = time.perf_counter()
        tags = tag_words([list(tokens)])[0]
        tagging["seconds"] += time.perf_counter() - start
        return list(zip(tokens, tags))

    WordNet.pos_tag = staticmethod(spacy_pos_tag)  # NLTK's tagger data is not available offline
    aug = naw.SynonymAug(aug_src="wordnet")
    aug.augment(texts[:2])
    tagging["seconds"] = 0.0
    start = time.perf_counter()
    for _ in range(n):
        aug.augment(texts)
    seconds = time.perf_counter() - start
    return {"method": "nlpaug SynonymAug (WordNet)", "sentences": len(texts), "n": n, "seconds": round(seconds, 2),
            "sentences_per_second": len(texts) / seconds, "pos_tagging_seconds": round(tagging["seconds"], 2),
            "sentences_per_second_without_tagging": len(texts) / max(1e-9, seconds - tagging["seconds"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="rt")
    ap.add_argument("--sentences", type=int, default=1000, help="RT sentences (from the task's test split)")
    ap.add_argument("--n", type=int, default=4, help="variants per sentence")
    ap.add_argument("--methods", default=DEFAULT_METHODS, help="comma-separated augmenter names")
    ap.add_argument("--nlpaug-subset", type=int, default=100, help="sentences for nlpaug's contextual run (0: all)")
    ap.add_argument("--no-nlpaug", action="store_true", help="skip nlpaug even when installed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args()

    task = load_task(args.task)
    # Timing only: these sentences are augmented, never trained on (fit uses train + source).
    pool = task.test.select(range(min(args.sentences, len(task.test))))
    texts, labels = list(pool["text"]), list(pool["label"])
    print(f"{len(texts)} {args.task} sentences, n={args.n}; load average before: {_load()}", file=sys.stderr)
    rows = []
    mlm_dir = None
    for name in [m.strip() for m in args.methods.split(",") if m.strip()]:
        row = bench_ours(name, task, texts, labels, args.n, args.seed)
        rows.append(row)
        if name == "contextual":
            mlm_dir = row["mlm"]["cache_dir"]
        print(f"  {name}: {row['sentences_per_second']:.1f} sentences/s", file=sys.stderr)

    nlpaug_rows = []
    if not args.no_nlpaug:
        try:
            import nlpaug  # noqa: F401
        except ImportError:
            print("nlpaug is not installed: no comparison", file=sys.stderr)
        else:
            if mlm_dir is None:
                mlm_dir = baselines.get("contextual").fit(task).describe_mlm()["cache_dir"]
            subset = texts if args.nlpaug_subset == 0 else texts[:args.nlpaug_subset]
            nlpaug_rows.append(bench_nlpaug_contextual(mlm_dir, subset, args.n))
            print(f"  nlpaug contextual: {nlpaug_rows[-1]['sentences_per_second']:.2f} sentences/s", file=sys.stderr)
            nlpaug_rows.append(bench_nlpaug_synonym(texts, args.n))
    reference = nlpaug_rows[0]["sentences_per_second"] if nlpaug_rows else None
    synonym = nlpaug_rows[1]["sentences_per_second"] if len(nlpaug_rows) > 1 else None

    print(f"\nload average after: {_load()}; torch threads: {__import__('torch').get_num_threads()}")
    header = f"| {'augmenter':32s} | sentences | sentences/s | x nlpaug contextual | x nlpaug SynonymAug |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for row in rows + nlpaug_rows:
        rate = row["sentences_per_second"]
        ratio = f"{rate / reference:.1f}" if reference else "-"
        ratio_syn = f"{rate / synonym:.2f}" if synonym else "-"
        row["x_nlpaug_contextual"] = rate / reference if reference else None
        row["x_nlpaug_synonym"] = rate / synonym if synonym else None
        print(f"| {row['method']:32s} | {row['sentences']:9d} | {rate:11.2f} | {ratio:>19s} | {ratio_syn:>19s} |")
    if len(nlpaug_rows) > 1:
        r = nlpaug_rows[1]
        print(f"(nlpaug SynonymAug spent {r['pos_tagging_seconds']}s in the spaCy tagger standing in for NLTK's; "
              f"without it: {r['sentences_per_second_without_tagging']:.1f} sentences/s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows + nlpaug_rows, "load_average": _load()}, f, indent=2, default=str)


if __name__ == "__main__":
    main()
