"""One KD step of augrl against TextBrewer's, side by side in one run (same models, losses, batch).

    python scripts/bench_textbrewer.py                   # batch 32, sequence 64, 10 timed steps
    python scripts/bench_textbrewer.py --steps 20 --json

Skips with a message when TextBrewer is not installed (``pip install --no-deps textbrewer``:
it needs torch, numpy, tqdm and tensorboard, which augrl's install already has).

Both sides train the same student (the shipped MiniLM's first 2 layers, a fresh head) from
the same teacher (the shipped MiniLM, 6 layers) with AdamW (lr 1e-4, weight decay 0.01,
gradient clipping 1.0) on the same synthetic batches (``--batch`` x ``--seq`` tokens; see
``scripts/bench_kd_throughput.py``), and each time is the mean over ``--steps`` steps after
``--warmup`` steps.

Objectives:

* **L2A** (attention MSE and hidden MSE on teacher layers 3 and 6 against student layers 1 and
  2, the hidden pair through a learned 384 x 384 projection, and dark-knowledge cross-entropy
  at T = 2). TextBrewer: ``GeneralDistiller`` with those ``intermediate_matches``
  (``attention_mse``, ``hidden_mse`` with ``proj: [linear, 384, 384]``) and ``kd_loss_type=ce``;
  it runs the teacher on every batch, the only way it has to match intermediate layers, and
  reads HF attention probabilities (``output_attentions``, eager attention; TinyBERT's MSE is on
  the pre-softmax scores, which augrl recomputes: the same cost class). augrl: cached teacher
  outputs (its default, :class:`augrl.kd.TeacherCache`) and, for the like-for-like line, the
  teacher run live every step.
* **logits only** (dark-knowledge cross-entropy at T = 2 + hard-label cross-entropy).
  TextBrewer's best documented configuration for it: ``BasicDistiller`` with
  ``is_caching_logits=True`` (teacher logits computed once, then read). augrl: cached outputs.

TextBrewer's own loop is timed (``distiller.train(..., num_steps=...)``, no TensorBoard log
directory, one checkpoint at the end, outside the timed steps): a timestamp is taken at the start
of each training step (its ``train_on_batch``), so its logits-caching pass is not timed. The load average is printed with the
figures: on a shared machine other jobs lower every rate.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_kd_throughput import synthetic_data, time_steps  # noqa: E402

from augrl import models  # noqa: E402
from augrl.kd import Distiller, TeacherCache  # noqa: E402

L2A = {"attention_mse": 1.0, "hidden_mse": 1.0, "dark_ce": 1.0}
LOGITS = {"dark_ce": 1.0, "hard_ce": 1.0}
LAYERS = ((3, 1), (6, 2))  # teacher layer, student layer


def ours(teacher, data, objective: dict, batch: int, steps: int, warmup: int, live: bool) -> dict:
    torch.manual_seed(0)
    student = models.build_student(2, models.DEFAULT_MODEL, num_layers=2)
    distiller = Distiller(student, objective, {"dark_ce": {"temperature": 2.0}}, teacher=teacher, lr=1e-4,
                          weight_decay=0.01, grad_clip=1.0, layer_map=",".join(f"{t}:{s}" for t, s in LAYERS))
    source = teacher
    if not live:
        source = TeacherCache.from_model(teacher, data, distiller.teacher_needs(), batch_size=batch)
    return time_steps(distiller, data, source, batch, steps, warmup)


def _hf_batches(data, batch: int, n: int) -> list[dict]:
    out = []
    for i in range(n):
        b = data.batch(range((i % (len(data) // batch)) * batch, (i % (len(data) // batch) + 1) * batch))
        out.append({"input_ids": b["input_ids"], "attention_mask": b["attention_mask"], "labels": b["labels"]})
    return out


def theirs(data, objective: dict, batch: int, steps: int, warmup: int) -> dict:
    from textbrewer import BasicDistiller, DistillationConfig, GeneralDistiller, TrainingConfig

    torch.manual_seed(0)
    layers = "attention_mse" in objective
    teacher = models.build_teacher(2, models.DEFAULT_MODEL, attentions=layers).eval()
    student = models.build_student(2, models.DEFAULT_MODEL, num_layers=2, attentions=layers)
    flags = {"output_hidden_states": True, "output_attentions": True} if layers else {}

    def adaptor(batch_, out):
        result = {"logits": out.logits, "labels": batch_["labels"]}
        if layers:
            result.update(hidden=list(out.hidden_states), attention=list(out.attentions),
                          inputs_mask=batch_["attention_mask"])
        return result

    total = warmup + steps + 1
    batches = _hf_batches(data, batch, total + 1)
    stamps: list[float] = []
    class Batches(torch.utils.data.Dataset):
        def __len__(self):
            return len(batches)

        def __getitem__(self, i):
            return batches[i]

    loader = torch.utils.data.DataLoader(Batches(), batch_size=None, shuffle=False)
    out_dir = tempfile.mkdtemp(prefix="textbrewer-")
    train_cfg = TrainingConfig(device="cpu", log_dir=None, output_dir=out_dir, ckpt_steps=total)
    if layers:
        matches = []
        for t, s in LAYERS:
            matches.append({"layer_T": t - 1, "layer_S": s - 1, "feature": "attention", "loss": "attention_mse",
                            "weight": 1})
            matches.append({"layer_T": t, "layer_S": s, "feature": "hidden", "loss": "hidden_mse", "weight": 1,
                            "proj": ["linear", 384, 384]})
        distill_cfg = DistillationConfig(temperature=2.0, kd_loss_type="ce", kd_loss_weight=1.0,
                                         hard_label_weight=0.0, intermediate_matches=matches)
        distiller = GeneralDistiller(train_cfg, distill_cfg, teacher, student, adaptor, adaptor)
        config = "GeneralDistiller, teacher live every step, intermediate_matches attention_mse + hidden_mse (proj)"
    else:
        distill_cfg = DistillationConfig(temperature=2.0, kd_loss_type="ce", kd_loss_weight=1.0,
                                         hard_label_weight=1.0, is_caching_logits=True)
        distiller = BasicDistiller(train_cfg, distill_cfg, teacher, student, adaptor, adaptor)
        config = "BasicDistiller, is_caching_logits=True (teacher logits computed once)"
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4, weight_decay=0.01)
    step = distiller.train_on_batch

    def stamped_step(batch_, args_):  # a timestamp at the start of every training step
        stamps.append(time.perf_counter())
        return step(batch_, args_)

    distiller.train_on_batch = stamped_step
    with distiller:
        if layers:
            distiller.train(optimizer, loader, num_steps=total, max_grad_norm=1.0, **flags)
        else:  # caching logits works with epochs only: one epoch over exactly the batches timed
            loader = torch.utils.data.DataLoader(Batches(), batch_size=None, shuffle=False)
            batches[:] = batches[:total]
            distiller.train(optimizer, loader, num_epochs=1, max_grad_norm=1.0)
    seconds = stamps[warmup + steps] - stamps[warmup]
    return {"samples_per_s": batch * steps / seconds, "step_ms": 1000 * seconds / steps, "configuration": config}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = p.parse_args()
    try:
        import textbrewer
    except ImportError:
        print("TextBrewer is not installed (pip install --no-deps textbrewer): nothing to compare", file=sys.stderr)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer = models.load_tokenizer(models.DEFAULT_MODEL)
    n = args.batch * (args.warmup + args.steps + 2)
    data = synthetic_data(n, args.seq, tokenizer.vocab_size, tokenizer.cls_token_id, tokenizer.sep_token_id)
    torch.manual_seed(0)
    teacher = models.build_teacher(2, models.DEFAULT_MODEL).eval()
    load_before = os.getloadavg()[0]
    rows = [
        {"objective": "L2A", "library": "augrl", "teacher": "cached",
         **ours(teacher, data, L2A, args.batch, args.steps, args.warmup, live=False)},
        {"objective": "L2A", "library": "augrl", "teacher": "live",
         **ours(teacher, data, L2A, args.batch, args.steps, args.warmup, live=True)},
        {"objective": "L2A", "library": f"TextBrewer {textbrewer.__version__}", "teacher": "live",
         **theirs(data, L2A, args.batch, args.steps, args.warmup)},
        {"objective": "logits only", "library": "augrl", "teacher": "cached",
         **ours(teacher, data, LOGITS, args.batch, args.steps, args.warmup, live=False)},
        {"objective": "logits only", "library": f"TextBrewer {textbrewer.__version__}", "teacher": "cached logits",
         **theirs(data, LOGITS, args.batch, args.steps, args.warmup)},
    ]
    info = {"batch": args.batch, "seq": args.seq, "steps": args.steps, "warmup": args.warmup,
            "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "load_avg_1m_before": load_before,
            "load_avg_1m_after": os.getloadavg()[0]}
    print(f"batch {args.batch} x seq {args.seq}, {info['torch_threads']} torch threads, load average "
          f"{load_before:.2f} before / {info['load_avg_1m_after']:.2f} after, {info['cpu_count']} CPUs")
    print("| objective | library | teacher | samples/s | ms/step | augrl / TextBrewer |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ref = [x for x in rows if x["objective"] == r["objective"] and x["library"].startswith("TextBrewer")]
        ratio = r["samples_per_s"] / ref[0]["samples_per_s"] if ref and r["library"] == "augrl" else None
        r["x_textbrewer"] = ratio
        print(f"| {r['objective']} | {r['library']} | {r['teacher']} | {r['samples_per_s']:.1f} | "
              f"{r['step_ms']:.1f} | {'-' if ratio is None else f'{ratio:.2f}x'} |")
    for r in rows:
        if "configuration" in r:
            print(f"TextBrewer, {r['objective']}: {r['configuration']}")
    if args.json:
        print(json.dumps({**info, "rows": rows}, default=str))


if __name__ == "__main__":
    main()
