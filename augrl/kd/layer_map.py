"""Which teacher layer each student layer learns from, for the intermediate-layer KD losses.

Layers are numbered from 1 (the first transformer layer) to N; layer ``l``'s output is
``hidden_states[l]`` of a Hugging Face model, its self-attention ``attentions[l - 1]``, and 0
stands for the embedding layer (``hidden_states[0]``), which always maps to the student's.

A map is written ``teacher:student`` pairs, e.g. ``"3:1,6:2"``: teacher layer 3 teaches student
layer 1 and teacher layer 6 student layer 2. That is the default for a 6-layer teacher and a
2-layer student: :meth:`LayerMap.uniform` matches each student layer with the top layer of an
equal block of teacher layers (TinyBERT's ``g(m) = m * N / M``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from augrl.errors import ConfigError
from augrl.models import uniform_layer_map


@dataclass(frozen=True)
class LayerMap:
    """An explicit teacher-layer -> student-layer mapping.

    Attributes:
        pairs: ``(teacher_layer, student_layer)`` pairs, 1-based, sorted by student layer;
            each student layer appears at most once.
    """

    pairs: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        pairs = tuple(sorted(((int(t), int(s)) for t, s in self.pairs), key=lambda p: p[1]))
        if not pairs:
            raise ConfigError("a layer map needs at least one teacher:student pair")
        students = [s for _, s in pairs]
        if len(set(students)) != len(students):
            raise ConfigError(f"layer map {self._text(pairs)}: a student layer is mapped twice")
        if any(t < 1 or s < 1 for t, s in pairs):
            raise ConfigError(f"layer map {self._text(pairs)}: layers are numbered from 1 "
                              "(the embeddings, 0, always map to each other)")
        object.__setattr__(self, "pairs", pairs)

    @classmethod
    def uniform(cls, teacher_layers: int, student_layers: int) -> "LayerMap":
        """Student layer m learns from teacher layer m * N / M (the top of each block)."""
        return cls(tuple((t + 1, s + 1) for s, t in enumerate(uniform_layer_map(teacher_layers, student_layers))))

    @classmethod
    def parse(cls, spec: "str | Mapping[int, int] | Iterable[tuple[int, int]] | LayerMap") -> "LayerMap":
        """From ``"3:1,6:2"``, ``{3: 1, 6: 2}`` (teacher -> student) or ``[(3, 1), (6, 2)]``."""
        if isinstance(spec, LayerMap):
            return spec
        if isinstance(spec, str):
            pairs = []
            for part in filter(None, (p.strip() for p in spec.split(","))):
                try:
                    t, s = part.split(":")
                    pairs.append((int(t), int(s)))
                except ValueError:
                    raise ConfigError(f"layer map {spec!r}: write teacher:student pairs, e.g. '3:1,6:2'") from None
            return cls(tuple(pairs))
        if isinstance(spec, Mapping):
            return cls(tuple((int(t), int(s)) for t, s in spec.items()))
        return cls(tuple((int(t), int(s)) for t, s in spec))

    @classmethod
    def resolve(cls, spec, teacher_layers: int | None, student_layers: int | None) -> "LayerMap":
        """``spec`` parsed and checked, or the uniform map when ``spec`` is None."""
        if spec is None:
            if teacher_layers is None or student_layers is None:
                raise ConfigError("the layer map needs the teacher's and the student's layer counts")
            return cls.uniform(teacher_layers, student_layers)
        layer_map = cls.parse(spec)
        layer_map.check(teacher_layers, student_layers)
        return layer_map

    def check(self, teacher_layers: int | None, student_layers: int | None) -> None:
        """Raise ConfigError if a pair names a layer the models do not have."""
        for t, s in self.pairs:
            if teacher_layers is not None and t > teacher_layers:
                raise ConfigError(f"layer map {self}: the teacher has {teacher_layers} layers, not {t}")
            if student_layers is not None and s > student_layers:
                raise ConfigError(f"layer map {self}: the student has {student_layers} layers, not {s}")

    @property
    def teacher_layers(self) -> tuple[int, ...]:
        return tuple(t for t, _ in self.pairs)

    @property
    def student_layers(self) -> tuple[int, ...]:
        return tuple(s for _, s in self.pairs)

    @property
    def top(self) -> tuple[int, int]:
        """The pair with the highest student layer (MiniLM distils this one only)."""
        return self.pairs[-1]

    @staticmethod
    def _text(pairs) -> str:
        return ",".join(f"{t}:{s}" for t, s in pairs)

    def __str__(self) -> str:
        return self._text(self.pairs)
