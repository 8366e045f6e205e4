"""How good are an augmenter's variants? Label preservation, diversity and edit size.

* ``label_preservation``: the fraction of variants on which a fine-tuned teacher predicts the
  original example's gold label (classification tasks). ``teacher_accuracy_originals`` is the
  teacher's accuracy on the originals themselves, the ceiling to read it against, and
  ``teacher_agreement`` the fraction of variants on which the teacher predicts what it
  predicts on the original.
* ``teacher_shift`` (regression tasks): mean absolute change of the teacher's prediction.
* ``distinct_1``, ``distinct_2``: distinct n-grams / all n-grams over all variants (Li et al.,
  2016), next to the same for the originals (``*_originals``).
* ``mean_edit_fraction``: word edits (Levenshtein over words) / words of the original, averaged
  over variants; ``changed_rate``: the fraction of variants that differ from their original.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import Text, as_example, edit_fraction, words_of


def ngrams_of(text: Text, n: int) -> list[tuple[str, ...]]:
    """Word n-grams of a text (pairs: of each side, none across the boundary)."""
    sides, _ = as_example(text)
    grams = []
    for side in sides:
        words = words_of(side)
        grams.extend(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    return grams


def distinct_n(texts: Sequence[Text], n: int) -> float:
    """Distinct n-grams divided by all n-grams in ``texts`` (0 when there are none)."""
    grams = [g for t in texts for g in ngrams_of(t, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def _teacher_outputs(teacher, tokenizer, spec, texts: list[Text], labels: list, device, max_length: int,
                     batch_size: int) -> np.ndarray:
    import datasets

    from augrl.batching import encode, predict

    columns = {f: [] for f in spec.text_fields}
    for t in texts:
        sides, _ = as_example(t)
        for f, s in zip(spec.text_fields, sides if len(sides) == len(spec.text_fields) else (sides[0], "")):
            columns[f].append(s)
    data = datasets.Dataset.from_dict({**columns, "label": list(labels)})
    return predict(teacher, encode(data, tokenizer, spec, max_length), batch_size=batch_size, device=device).numpy()


def quality_report(originals: Sequence[Text], labels: Sequence, variants: Sequence[Sequence[Text]], teacher=None,
                   tokenizer=None, spec=None, device="cpu", max_length: int = 128, batch_size: int = 128) -> dict:
    """Quality measures of ``variants`` (one list per original); see the module docstring.

    Args:
        originals, labels: the augmented inputs and their gold labels.
        variants: the augmenter's output for ``originals``.
        teacher, tokenizer, spec: a fine-tuned classifier, its tokenizer and the task spec; without
            them only the diversity and edit measures are reported.
    """
    flat = [(i, v) for i, vs in enumerate(variants) for v in vs]
    report: dict = {
        "originals": len(originals),
        "variants": len(flat),
        "changed_rate": float(np.mean([v != originals[i] for i, v in flat])) if flat else 0.0,
        "mean_edit_fraction": float(np.mean([edit_fraction(originals[i], v) for i, v in flat])) if flat else 0.0,
        "distinct_1": distinct_n([v for _, v in flat], 1),
        "distinct_2": distinct_n([v for _, v in flat], 2),
        "distinct_1_originals": distinct_n(list(originals), 1),
        "distinct_2_originals": distinct_n(list(originals), 2),
    }
    if teacher is None or not flat:
        return report
    source = list(originals) + [v for _, v in flat]
    gold = list(labels) + [labels[i] for i, _ in flat]
    out = _teacher_outputs(teacher, tokenizer, spec, source, gold, device, max_length, batch_size)
    orig_out, var_out = out[:len(originals)], out[len(originals):]
    owner = np.array([i for i, _ in flat])
    if spec.is_regression:
        report["teacher_shift"] = float(np.mean(np.abs(var_out[:, 0] - orig_out[owner, 0])))
        report["label_preservation"] = None
        return report
    gold_orig = np.array([int(x) for x in labels])
    pred_orig, pred_var = orig_out.argmax(-1), var_out.argmax(-1)
    report["label_preservation"] = float(np.mean(pred_var == gold_orig[owner]))
    report["teacher_agreement"] = float(np.mean(pred_var == pred_orig[owner]))
    report["teacher_accuracy_originals"] = float(np.mean(pred_orig == gold_orig))
    return report
