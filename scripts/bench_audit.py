"""Time the leakage audit on real data, check it against the pairwise reference, calibrate it.

    AUGRL_DATA=../shared/data python scripts/bench_audit.py                 # speed
    AUGRL_DATA=../shared/data python scripts/bench_audit.py --calibrate     # thresholds

Speed: audits all 67,349 rows of SST-2's training file against ``--targets`` RT sentences
(default 10,000, a seeded sample of RT's 10,662) with :func:`augrl.leakage.audit`, and prints
the seconds (index included) and the counts per category, and how many RT sentences occur in
SST-2 verbatim and after normalisation (the audit the other way round). It then runs the pairwise reference
(:func:`augrl.leakage.audit_pairwise`, every source row against every target) on
``--pairwise-sample`` source rows, checks that both give the same category, target and score
for each of them, and extrapolates the pairwise time to all rows.

Calibration (``--calibrate``): the evidence for the default thresholds. For the ``rt`` task's
held-out texts (validation + test of ``--seed``) and for as many chunks of unrelated text
(Amazon DVD reviews, cut at random places into chunks of the same mean length in words), it
prints (1) by length in words, the share of SST-2 rows that occur as a contiguous word sequence
inside one of those texts, and (2) by containment of word 3-grams, how many SST-2 rows of at
least 4 words that are not substrings reach it. Matches against the unrelated text are
coincidences; a threshold is good where they are rare and the matches against RT are not.
"""

from __future__ import annotations

import argparse
import collections
import random
import time

import numpy as np

from augrl import leakage
from augrl.tasks import load_raw, load_task


def bench(args: argparse.Namespace) -> None:
    _, sst2 = load_raw("sst2", args.data_dir)
    source = [r["text"] for r in sst2.target["train"]]
    _, rt = load_raw("rt", args.data_dir)
    rt_texts = [r["text"] for r in rt.target["all"]]
    pick = np.random.default_rng(args.seed).permutation(len(rt_texts))[: args.targets]
    targets = [rt_texts[i] for i in sorted(pick)]

    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        report = leakage.audit(source, targets, max_examples=0)
        times.append(time.perf_counter() - start)
    print(f"audit: {len(source)} SST-2 train rows against {len(targets)} RT sentences "
          f"(seed {args.seed}): {min(times):.2f} s (best of {args.repeat}; index included)")
    print("  counts:", report.counts)
    back = leakage.audit(rt_texts, source, max_examples=0).counts  # the other way round
    print(f"RT sentences (all {len(rt_texts)}) that are an SST-2 train row: {back['exact']} verbatim, "
          f"{back['exact'] + back['normalized']} after normalisation")

    if args.pairwise_sample:
        rows = random.Random(args.seed).sample(range(len(source)), min(args.pairwise_sample, len(source)))
        sample = [source[i] for i in rows]
        start = time.perf_counter()
        ref = leakage.audit_pairwise(sample, targets, max_examples=0)
        seconds = time.perf_counter() - start
        same = all((report.categories[i], report.matches[i], report.scores[i]) ==
                   (ref.categories[k], ref.matches[k], ref.scores[k]) for k, i in enumerate(rows))
        print(f"pairwise reference on {len(rows)} random rows: {seconds:.2f} s, about "
              f"{seconds / len(rows) * len(source):.0f} s for all {len(source)} rows; "
              f"same categories, targets and scores as the index: {same}")
        if not same:
            raise SystemExit("the indexed audit and the pairwise reference disagree")


def calibrate(args: argparse.Namespace) -> None:
    task = load_task("rt", seed=args.seed, data_dir=args.data_dir, leakage="keep")
    heldout = task.heldout_texts()
    source = [r["text"] for r in load_raw("sst2", args.data_dir)[1].target["train"]]
    _, dvd = load_raw("amazon-dvd", args.data_dir)
    words = [w for r in dvd.target["all"] for w in leakage.normalize(r["text"]).split()]
    per = round(np.mean([len(leakage.normalize(t).split()) for t in heldout]))
    starts = random.Random(args.seed).sample(range(len(words) - per), len(heldout))
    unrelated = [" ".join(words[s : s + per]) for s in starts]
    print(f"rt seed {args.seed}: {len(heldout)} held-out texts, {per} words on average; the same number "
          f"of {per}-word chunks of Amazon DVD reviews ({len(words)} words in all)")

    print("\n(1) SST-2 rows inside a text (contiguous words), by the row's length in words")
    print(f"{'words':>6s} {'rows':>6s} {'in RT held-out':>15s} {'in unrelated':>13s}")
    inside = {name: leakage.NgramIndex(texts, n=1) for name, texts in (("rt", heldout), ("unrelated", unrelated))}
    by_len = collections.defaultdict(lambda: [0, 0, 0])
    for text in source:
        w = leakage.normalize(text).split()
        if not w:
            continue
        row = by_len[min(len(w), 9)]
        row[0] += 1
        row[1] += inside["rt"].substring_of(w) is not None
        row[2] += inside["unrelated"].substring_of(w) is not None
    for length in sorted(by_len):
        n, a, b = by_len[length]
        label = f"{length}" if length < 9 else ">=9"
        print(f"{label:>6s} {n:6d} {a:7d} {100 * a / n:5.1f}% {b:6d} {100 * b / n:5.2f}%")

    print("\n(2) SST-2 rows of >= 4 words, not inside a text: best 3-gram containment in one text")
    print(f"{'containment':>12s} {'RT held-out':>12s} {'unrelated':>10s}")
    hist = {}
    for name, texts in (("rt", heldout), ("unrelated", unrelated)):
        rep = leakage.audit(source, texts, min_substring_words=4, ngram=3, containment=0.5, max_examples=0)
        hist[name] = collections.Counter(min(int(s * 10 + 1e-9), 9) for c, s in zip(rep.categories, rep.scores)
                                         if c == "near_duplicate")
    for decile in range(5, 10):
        label = f"[{decile / 10:.1f}, {(decile + 1) / 10:.1f})" if decile < 9 else "[0.9, 1.0]"
        print(f"{label:>12s} {hist['rt'][decile]:12d} {hist['unrelated'][decile]:10d}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None, help="data root (default $AUGRL_DATA)")
    ap.add_argument("--targets", type=int, default=10_000, help="RT sentences audited against (default 10000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=1, help="timed runs; the best is printed")
    ap.add_argument("--pairwise-sample", type=int, default=200,
                    help="source rows checked against the pairwise reference (0: skip)")
    ap.add_argument("--calibrate", action="store_true", help="print the threshold evidence instead")
    args = ap.parse_args()
    calibrate(args) if args.calibrate else bench(args)


if __name__ == "__main__":
    main()
