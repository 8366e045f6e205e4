"""Augmenters as ``datasets.Dataset.map`` functions: labels kept, origin of every row recorded.

    augmented = task.train.map(map_function(aug, n=4, seed=0), batched=True, with_indices=True,
                               remove_columns=task.train.column_names)
    augmented = augment_dataset(task.train, aug, n=4, seed=0)        # the same, in one call

Each input row gives ``n`` output rows (plus the row itself with ``keep_original=True``). Every
column of the input is copied (so ``label``, ``idx`` and ``domain`` are kept) with the text
column(s) replaced by the variant, and three columns are added:

* ``origin_row``: position of the input row in the mapped dataset (the "source index");
* ``method``: the augmenter's name (``original`` for kept originals);
* ``edits``: word edits from the original to the variant (summed over both sides of a pair).

Row ``i``'s variants depend only on ``seed`` and ``i``, not on how ``map`` batches the rows.
"""

from __future__ import annotations

from typing import Callable, Sequence

from .base import Augmenter, as_example, edit_count, example_rngs

ORIGIN_COLUMNS = ("origin_row", "method", "edits")


def text_fields_of(column_names: Sequence[str]) -> tuple[str, ...]:
    """``("text_a", "text_b")`` for pair datasets, else ``("text",)``."""
    if "text_a" in column_names and "text_b" in column_names:
        return ("text_a", "text_b")
    if "text" in column_names:
        return ("text",)
    raise ValueError(f"no text column: expected 'text' or 'text_a'/'text_b', got {list(column_names)}")


def map_function(augmenter: Augmenter, n: int = 1, seed: int = 0, text_fields: Sequence[str] | None = None,
                 label_field: str = "label", keep_original: bool = False) -> Callable[[dict, list[int]], dict]:
    """A batched ``Dataset.map`` function (use ``batched=True, with_indices=True``).

    Args:
        augmenter: any :class:`~augrl.baselines.base.Augmenter` (fitted if it needs it).
        n: variants per row.
        seed: row ``i``'s variants are seeded by ``(seed, i)``.
        text_fields: the text column(s); default ``text`` or ``text_a``/``text_b``.
        label_field: passed to the augmenter as labels when present (CBERT needs them).
        keep_original: also emit each input row (``method="original"``, ``edits=0``) first.
    """

    def fn(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        fields = tuple(text_fields) if text_fields else text_fields_of(list(batch))
        rows = list(zip(*(batch[f] for f in fields)))
        texts = [r[0] if len(r) == 1 else (r[0], r[1]) for r in rows]
        examples = [as_example(t) for t in texts]
        labels = list(batch[label_field]) if label_field in batch else None
        variants = augmenter.augment_examples([e for e, _ in examples], [p for _, p in examples], n, labels,
                                              example_rngs(seed, indices))
        out: dict[str, list] = {k: [] for k in list(batch) + list(ORIGIN_COLUMNS)}
        for row, (index, original, vs) in enumerate(zip(indices, texts, variants)):
            emitted = ([(original, "original", 0)] if keep_original else []) + \
                      [(v, augmenter.name, edit_count(original, v)) for v in vs]
            for text, method, edits in emitted:
                sides = (text,) if isinstance(text, str) else text
                for column in batch:
                    out[column].append(batch[column][row])
                for f, side in zip(fields, sides):
                    out[f][-1] = side
                out["origin_row"].append(int(index))
                out["method"].append(method)
                out["edits"].append(int(edits))
        return out

    return fn


def augment_dataset(dataset, augmenter: Augmenter, n: int = 1, seed: int = 0, keep_original: bool = False,
                    batch_size: int = 256, text_fields: Sequence[str] | None = None, label_field: str = "label"):
    """``dataset`` with every row replaced by its ``n`` variants (see the module docstring).

    The features of the input are kept (a ``ClassLabel`` stays a ``ClassLabel``). The map is
    given an explicit fingerprint (augmenter, settings, seed), so ``datasets`` never hashes the
    augmenter's models, and never reads a cache file (a refitted augmenter with the same settings
    must not be served old variants).
    """
    import datasets

    from augrl.artifacts import key_hash

    features = datasets.Features({**dataset.features, "origin_row": datasets.Value("int64"),
                                  "method": datasets.Value("string"), "edits": datasets.Value("int64")})
    fingerprint = key_hash({"parent": dataset._fingerprint, "augmenter": augmenter.name,
                            "params": augmenter.params(), "n": n, "seed": seed, "keep_original": keep_original})
    return dataset.map(map_function(augmenter, n=n, seed=seed, text_fields=text_fields, label_field=label_field,
                                    keep_original=keep_original),
                       batched=True, with_indices=True, batch_size=batch_size, remove_columns=dataset.column_names,
                       features=features, new_fingerprint=fingerprint, load_from_cache_file=False,
                       desc=f"augment ({augmenter.name})")
