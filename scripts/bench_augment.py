"""Speed of every augmenter on RT sentences, side by side with nlpaug when it is installed.

    python scripts/bench_augment.py                       # 1,000 RT sentences, n = 4
    python scripts/bench_augment.py --methods contextual,cbert --nlpaug-subset 100 --json bench.json

For each augmenter: ``fit(task)`` is timed on its own (the adapted MLM, CBERT model and POS
vocabulary come from the on-disk cache after the first run; build them first, e.g. with
``augrl augment --method cbert``), a short warm-up call follows, then one ``augment(sentences,
n)`` call is timed. Rates are variants per second (each input sentence gets n variants).
Beside the speed: distinct-2 of the variants and, with the cached seed-0 teacher of the task
(``--quality``, default on), label preservation (:func:`augrl.baselines.quality.quality_report`).

**nlpaug, in the same run** (when importable): ``ContextualWordEmbsAug`` on the same adapted MLM
(loaded from its cache folder), ``action="substitute"``, and augrl's own ``p`` (``aug_p``),
1..10 words and ``top_k``, in two configurations, both printed with their ratio:

* **best** (nlpaug's documented default, ``use_custom_api=True``): its own BERT wrapper, the
  whole list passed at once so it batches (its ``batch_size=32``). nlpaug 1.1.11's wrapper
  calls ``tokenizer._convert_token_to_id`` / ``_convert_id_to_token``, which transformers 5
  removed; they are pointed at the public ``convert_tokens_to_ids`` / ``convert_ids_to_tokens``
  (the same lookups), nothing else is changed.
* **pipeline** (``use_custom_api=False``): its fill-mask pipeline path.

nlpaug gives one variant per input and call, so n variants are n calls over the list. It is slow
on a CPU, so it runs on the first ``--nlpaug-subset`` sentences (default 100; 0 = all); rates are
per variant either way. ``SynonymAug`` (WordNet) is measured too; it POS-tags with NLTK's
perceptron tagger, whose data cannot be downloaded offline, so spaCy's Penn Treebank tagger
stands in, and its time is reported so it can be subtracted.

**Against the FLOP limit** (contextual and CBERT): the fewest FLOPs a variant needs is one
encoder pass over its word pieces, 2 * layers * (n * (4 d^2 + 2 d d_ff) + 2 n^2 d), plus the LM
head (transform and vocabulary projection, 2 (d^2 + d V)) at its masked positions only
(ceil(p W) words clipped to [1, 10], one piece each at least). That count projects onto the
whole vocabulary V; since the augmenters project onto the K words they may sample (whole
alphabetic words: no word pieces, special tokens or punctuation), the script also prints the
limit with K in place of V, which is the stricter one. Either limit is the matmul peak
measured in the same run (best float32 ``torch.matmul`` of two 2048^2 matrices) divided by the
mean of that count, and the share reached is the measured rate over it. ``--profile`` prints
where augrl's time goes (cProfile, the functions with the most own time) for those two.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from augrl import baselines
from augrl.tasks import load_task

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_kd_throughput import matmul_peak  # noqa: E402

DEFAULT_METHODS = "eda,mask,pos,ngram,tang,contextual,cbert"


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def bench_ours(name: str, task, texts: list[str], labels: list[int], n: int, seed: int, profile: bool = False):
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
           "variants_per_second": n * len(texts) / seconds, "fit_seconds": round(fit_seconds, 1),
           "changed_rate": round(changed, 3)}
    if hasattr(aug, "describe_mlm"):
        row["mlm"] = aug.describe_mlm()
    if profile:
        row["profile"] = profile_top(lambda: aug.augment(texts, n=n, labels=labels, seed=seed))
    return row, out, aug


def profile_top(call, top: int = 8) -> list[dict]:
    """The functions with the most own time in ``call()`` (cProfile), with their share."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    call()
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    total = sum(v[2] for v in stats.values()) or 1.0
    rows = sorted(((v[2], k) for k, v in stats.items()), reverse=True)[:top]
    return [{"function": f"{Path(k[0]).name}:{k[1]}({k[2]})", "seconds": round(t, 2), "share": round(t / total, 3)}
            for t, k in rows]


def flop_limit(aug, texts: list[str], peak: float) -> dict:
    """The fewest FLOPs per variant of an MLM replacement augmenter (module docstring) and the
    variants per second the matmul ``peak`` allows."""
    from transformers import AutoConfig, AutoTokenizer

    folder = aug.describe_mlm()["cache_dir"]
    config, tokenizer = AutoConfig.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    d, d_ff, layers, vocab = config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.vocab_size
    sampleable = int(aug._allowed_ids().sum())
    full, restricted = [], []
    for text in texts:
        pieces = len(tokenizer(text, truncation=True, max_length=128)["input_ids"])
        masked = min(max(1, math.ceil(aug.p * len(text.split()))), aug.max_words)
        encoder = 2 * layers * (pieces * (4 * d * d + 2 * d * d_ff) + 2 * pieces * pieces * d)
        full.append(encoder + masked * 2 * (d * d + d * vocab))
        restricted.append(encoder + masked * 2 * (d * d + d * sampleable))
    flops, flops_sampleable = sum(full) / len(full), sum(restricted) / len(restricted)
    return {"flops_per_variant": flops, "limit_variants_per_second": peak / flops, "vocabulary": vocab,
            "sampleable_vocabulary": sampleable, "flops_per_variant_sampleable": flops_sampleable,
            "limit_sampleable_variants_per_second": peak / flops_sampleable}


def quality(texts, labels, variants, teacher_parts) -> dict:
    from augrl.baselines.quality import quality_report

    teacher, tokenizer, spec = teacher_parts if teacher_parts else (None, None, None)
    report = quality_report(texts, labels, variants, teacher=teacher, tokenizer=tokenizer, spec=spec)
    return {"distinct_2": round(report["distinct_2"], 3),
            "label_preservation": None if report.get("label_preservation") is None
            else round(report["label_preservation"], 3)}


def seed0_teacher(task_name: str):
    """The task's cached seed-0 MiniLM teacher (fine-tuned once if the cache lacks it)."""
    from augrl.pipelines import RunConfig, prepare
    from augrl.teachers import obtain_teacher

    data = prepare(RunConfig(task=task_name, seed=0))
    teacher, _ = obtain_teacher(RunConfig(task=task_name, seed=0), data, progress=False)
    return teacher.eval(), data.tokenizer, data.task.spec


def patch_nlpaug_for_transformers5() -> None:
    """nlpaug 1.1.11's BERT wrapper looks tokens up with methods transformers 5 removed; point them
    at the public ones (the same lookups)."""
    from nlpaug.model.lang_models import Bert

    Bert.token2id = lambda self, token: self.tokenizer.convert_tokens_to_ids(token)
    Bert.id2token = lambda self, _id: self.tokenizer.convert_ids_to_tokens(_id)


def bench_nlpaug_contextual(mlm_dir: str, texts: list[str], n: int, path: str, p: float, top_k: int,
                            max_words: int) -> tuple[dict, list]:
    import nlpaug.augmenter.word as naw

    if path == "best":
        patch_nlpaug_for_transformers5()
    aug = naw.ContextualWordEmbsAug(model_path=mlm_dir, model_type="bert", action="substitute", top_k=top_k,
                                    aug_p=p, aug_min=1, aug_max=max_words, device="cpu",
                                    use_custom_api=path == "best")
    aug.augment(texts[:2])  # warm-up
    start = time.perf_counter()
    outputs = [aug.augment(texts) for _ in range(n)]
    seconds = time.perf_counter() - start
    variants = [[out[i] for out in outputs] for i in range(len(texts))]
    config = ("its own BERT wrapper (use_custom_api=True), list input, batch_size 32" if path == "best"
              else "fill-mask pipeline (use_custom_api=False), list input")
    return ({"method": f"nlpaug contextual ({path})", "sentences": len(texts), "n": n, "seconds": round(seconds, 2),
             "variants_per_second": n * len(texts) / seconds, "model": mlm_dir, "configuration": config,
             "aug_p": p, "top_k": top_k}, variants)


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
            "variants_per_second": n * len(texts) / seconds, "pos_tagging_seconds": round(tagging["seconds"], 2),
            "variants_per_second_without_tagging": n * len(texts) / max(1e-9, seconds - tagging["seconds"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="rt")
    ap.add_argument("--sentences", type=int, default=1000, help="RT sentences (from the task's test split)")
    ap.add_argument("--n", type=int, default=4, help="variants per sentence")
    ap.add_argument("--methods", default=DEFAULT_METHODS, help="comma-separated augmenter names")
    ap.add_argument("--nlpaug-subset", type=int, default=100, help="sentences for nlpaug's contextual runs (0: all)")
    ap.add_argument("--nlpaug-paths", default="best,pipeline", help="nlpaug contextual configurations to run")
    ap.add_argument("--no-nlpaug", action="store_true", help="skip nlpaug even when installed")
    ap.add_argument("--no-quality", action="store_true", help="skip label preservation (needs the task's teacher)")
    ap.add_argument("--profile", action="store_true", help="where augrl's contextual and CBERT time goes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args()

    task = load_task(args.task)
    # Timing only: these sentences are augmented, never trained on (fit uses train + source).
    pool = task.test.select(range(min(args.sentences, len(task.test))))
    texts, labels = list(pool["text"]), list(pool["label"])
    print(f"{len(texts)} {args.task} sentences, n={args.n}; load average before: {_load()}", file=sys.stderr)
    peak = matmul_peak(2048)
    teacher_parts = None if args.no_quality else seed0_teacher(args.task)
    rows, contextual = [], None
    for name in [m.strip() for m in args.methods.split(",") if m.strip()]:
        row, variants, aug = bench_ours(name, task, texts, labels, args.n, args.seed,
                                        profile=args.profile and name in ("contextual", "cbert"))
        row.update(quality(texts, labels, variants, teacher_parts))
        if name in ("contextual", "cbert"):
            row.update(flop_limit(aug, texts, peak))
            row["share_of_limit"] = row["variants_per_second"] / row["limit_variants_per_second"]
            row["share_of_sampleable_limit"] = row["variants_per_second"] / row["limit_sampleable_variants_per_second"]
        if name == "contextual":
            contextual = aug
        rows.append(row)
        print(f"  {name}: {row['variants_per_second']:.1f} variants/s", file=sys.stderr)

    nlpaug_rows = []
    if not args.no_nlpaug:
        try:
            import nlpaug  # noqa: F401
        except ImportError:
            print("nlpaug is not installed: no comparison", file=sys.stderr)
        else:
            if contextual is None:
                contextual = baselines.get("contextual").fit(task)
            mlm_dir = contextual.describe_mlm()["cache_dir"]
            subset = texts if args.nlpaug_subset == 0 else texts[:args.nlpaug_subset]
            for path in [x.strip() for x in args.nlpaug_paths.split(",") if x.strip()]:
                row, variants = bench_nlpaug_contextual(mlm_dir, subset, args.n, path, contextual.p, contextual.top_k,
                                                        contextual.max_words)
                row.update(quality(subset, labels[:len(subset)], variants, teacher_parts))
                nlpaug_rows.append(row)
                print(f"  nlpaug contextual ({path}): {row['variants_per_second']:.2f} variants/s", file=sys.stderr)
            nlpaug_rows.append(bench_nlpaug_synonym(texts, args.n))

    print(f"\nload average after: {_load()}; torch threads: {__import__('torch').get_num_threads()}; "
          f"matmul peak {peak / 1e9:.1f} GFLOP/s")
    references = {r["method"]: r["variants_per_second"] for r in nlpaug_rows}
    columns = [m for m in references if m.startswith("nlpaug contextual")]
    header = ("| augmenter | sentences | variants/s | distinct-2 | label kept | "
              + " | ".join(f"x {c}" for c in columns) + " | FLOP limit (variants/s) | share of limit "
              "| limit, sampleable words only | share of it |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for row in rows + nlpaug_rows:
        rate = row["variants_per_second"]
        ratios = {c: rate / references[c] for c in columns}
        row["x_nlpaug"] = ratios
        limit = row.get("limit_variants_per_second")
        limit_cells = "- | - | - | -" if limit is None else (
            f"{limit:.0f} | {row['share_of_limit']:.1%} | {row['limit_sampleable_variants_per_second']:.0f} | "
            f"{row['share_of_sampleable_limit']:.1%}")
        print(f"| {row['method']} | {row['sentences']} | {rate:.1f} | {row.get('distinct_2', '-')} | "
              f"{row.get('label_preservation', '-')} | " + " | ".join(f"{v:.1f}" for v in ratios.values())
              + f" | {limit_cells} |")
    for row in nlpaug_rows:
        if "configuration" in row:
            print(f"{row['method']}: {row['configuration']}, aug_p {row['aug_p']}, top_k {row['top_k']}")
    synonym = [r for r in nlpaug_rows if r["method"].startswith("nlpaug SynonymAug")]
    if synonym:
        r = synonym[0]
        print(f"(nlpaug SynonymAug spent {r['pos_tagging_seconds']}s in the spaCy tagger standing in for NLTK's; "
              f"without it: {r['variants_per_second_without_tagging']:.1f} variants/s)")
    for row in rows:
        for entry in row.get("profile", []):
            print(f"  profile {row['method']}: {entry['share']:.1%} {entry['seconds']:.2f}s {entry['function']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows + nlpaug_rows, "load_average": _load(), "matmul_peak_flop_per_s": peak}, f,
                      indent=2, default=str)


if __name__ == "__main__":
    main()
