"""Augmentation baselines, imported as ``augrl.baselines``.

One interface for every method (:class:`Augmenter`: ``fit(task)``, ``augment(texts, n, labels,
seed)``) and a registry by name::

    from augrl import baselines
    aug = baselines.get("tang")            # eda, mask, pos, ngram, tang, contextual, cbert, l2a
    aug.fit(task)                           # task resources: POS vocabulary, adapted MLM...
    variants = aug.augment(list(task.train["text"]), n=4, labels=list(task.train["label"]), seed=0)
    augmented = baselines.augment_dataset(task.train, aug, n=4, seed=0)   # a datasets.Dataset

Methods: EDA (Wei & Zou 2019; :mod:`.eda`); masking, POS-guided replacement, n-gram sampling and
their combination (Tang et al. 2019; :mod:`.tang`); contextual replacement with a domain-adapted
masked LM (:mod:`.contextual`, :mod:`.mlm`); CBERT (Wu et al. 2019; :mod:`.cbert`). Quality
measures (label preservation, distinct-n, edit fraction) are in :mod:`.quality`.
"""

from .base import Augmenter, Text, WordAugmenter, edit_count, edit_fraction, word_edit_distance
from .registry import get, names, parameters, register
from .mapping import augment_dataset, map_function

__all__ = ["Augmenter", "WordAugmenter", "Text", "get", "names", "parameters", "register", "augment_dataset",
           "map_function", "edit_count", "edit_fraction", "word_edit_distance"]
