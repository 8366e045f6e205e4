"""Train a keep/drop policy with stable-baselines3 on augrl/AugmentKD-v0 and test what it keeps.

The same as ``augrl train-policy`` (all its flags work here), e.g. the RT comparison of
students distilled on PPO-kept vs all vs random-kept candidates over three seeds:

    AUGRL_DATA=../shared/data python scripts/train_policy.py --task rt --algo ppo --shots 40 \\
        --seeds 3 --episodes 10 --out runs/ppo-rt

Each seed appends one line to ``runs/ppo-rt/results.jsonl`` (``evaluation``: test metrics of
the three students), saves ``ppo-seed<N>/policy.zip``, TensorBoard logs and
``learning_curves.png``; a summary table is printed at the end.
"""

import sys

from augrl.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-policy", *sys.argv[1:]]))
