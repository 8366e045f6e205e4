"""What each ranker row of a bench keeps of each kind of candidate, without its final student.

Result lines record ``selection.kept_by_provenance`` (how many kept candidates were EDA or L2A
variants, source sentences, another domain's sentences, planted ones), but lines written before
that field say only how many were kept. This script replays the selection of every ranker row
(``kd+random``, ``kd+confidence``, ``kd+kl``, ``kd+valsim``, ``kd+influence`` and rows derived
from them) of a bench: the same pool, teacher, features and seed as ``augrl bench`` with the same
flags, taken from the artifact cache where the bench left them, then prints what each kept. No
final student is trained and nothing is written to a bench folder. For example, the budgeted
preset's rankers on seeds 0-4:

    AUGRL_DATA=../shared/data python scripts/selection_mix.py --preset budgeted --seeds 0,1,2,3,4

It takes every flag of ``augrl bench`` (``--methods``, ``--seeds``, ``--teacher``...; ``--out``
is not needed) and ``--save FILE``, which writes the counts as JSON, one object per row and seed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from augrl.cli import bench_settings, build_parser
from augrl.fileio import write_file_atomically


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    save = None
    if "--save" in argv:
        i = argv.index("--save")
        if i + 1 >= len(argv):
            print("selection_mix.py: --save needs a file name", file=sys.stderr)
            return 2
        save = Path(argv.pop(i + 1))
        argv.pop(i)
    args = build_parser().parse_args(["bench", *argv])

    from augrl import bench
    from augrl.methods import SharedSeed
    from augrl.report import kept_by_kind
    from augrl.selection.rows import kept_by_provenance, ranker_selection

    bench.import_modules(args.import_modules)
    settings, base = bench_settings(args)
    runs = [r for r in bench.plan_runs(settings, base) if r.method.options.get("ranker")]
    if not runs:
        print("selection_mix.py: no ranker row among the bench's methods "
              f"({', '.join(settings.resolve_methods())}); name one with --methods", file=sys.stderr)
        return 2
    rows, shared = [], None
    for run in runs:
        if shared is None or shared.key != (run.task, run.shots, run.seed):
            shared = None  # free the previous seed's teacher and pools first
            shared = SharedSeed(base.replace(task=run.task, shots=run.shots, seed=run.seed), not args.quiet)
        pool, kept, _, budget, seconds = ranker_selection(bench.bench_run(run, shared, settings, not args.quiet,
                                                                          args.max_steps))
        kinds = kept_by_provenance(pool, kept)
        row = {"task": run.task, "shots": run.shots, "seed": run.seed, "method": run.method.name, "pool": len(pool),
               "kept": len(kept), "budget": budget, "kept_by_provenance": kinds, "seconds": round(seconds, 2)}
        rows.append(row)
        print(f"{run.task} seed={run.seed} shots={run.shots} {run.method.name}: kept {len(kept)} of {len(pool)}: "
              f"{kept_by_kind([{'kept_by_provenance': kinds}])}", flush=True)
    if save is not None:
        write_file_atomically(save, lambda tmp: Path(tmp).write_text(json.dumps(rows, indent=2)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
