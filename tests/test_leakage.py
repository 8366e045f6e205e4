import json
import random

import pytest

from augrl import leakage
from augrl.cli import main
from augrl.errors import ConfigError, DataError
from augrl.leakage import audit, audit_pairwise, normalize
from augrl.tasks import load_task

# held-out target texts (RT style: joined clitics, double quotes, British spelling)
TEST_TEXTS = [
    "the film's humour is dry , but it doesn't wear out its welcome .",
    'a "clever" little thriller that keeps you guessing until the final reel .',
    "director kim ki-duk shoots the lake with patience and a painter's eye for cold blue light "
    "and the slow drift of mist over the water .",
    "an unfunny sequel nobody asked for .",
]
# planted leaks, one per category, each of a different test text
EXACT = TEST_TEXTS[3]
NORMALIZED = "The film 's humor is dry, but it does n't wear out its welcome"  # SST-2 style tokens
SUBSTRING = "`` clever '' little thriller that keeps"  # 6 words inside TEST_TEXTS[1]
NEAR_DUP = ("director kim ki-duk shoots the lake with patience and a painter 's eye for warm blue light "
            "and the slow drift of mist over the water")  # one word changed mid-sentence (cold -> warm)
CLEAN = [
    "a heartfelt comedy about two brothers and a boat .",
    "clever little thriller",  # inside TEST_TEXTS[1] but only 3 words: too generic to flag
    "keeps you guessing about nothing much at all , sadly .",  # shares 3 words, not a leak
    "the slow drift of the plot never stops",  # shares a 4-word phrase: 1 of 6 trigrams
]


@pytest.mark.parametrize("a, b", [
    ("it 's", "it's"), ("do n't", "don't"), ("ca n't", "can't"), ("can not", "cannot"),
    ("`` conan ''", '"Conan"'), ("( maybe twice )", "[maybe twice]"), ("-lrb- maybe -rrb-", "(maybe)"),
    ("cliches", "clichés"), ("wan na", "wanna"), ("humor", "humour"), ("theaters", "theatres"),
    ("j . r . r . tolkien 's", "j.r.r. tolkien's"), ("jean - claud", "jean-claud"), ("a b", "a\x96b"),
])
def test_normalize_folds_tokenisation_quotes_brackets_punctuation(a, b):
    assert normalize(a) == normalize(b)


def test_normalize_keeps_words_apart():
    assert normalize("'s not very good either .") == "s not very good either"  # a phrase cut after "it"
    assert normalize("four hours , your tour") == "four hours your tour"
    assert normalize("it's") != normalize("its own")


def test_each_planted_leak_is_found_in_its_category():
    source = CLEAN[:2] + [EXACT, NORMALIZED] + CLEAN[2:] + [SUBSTRING, NEAR_DUP]
    report = audit(source, TEST_TEXTS)
    assert report.categories == [None, None, "exact", "normalized", None, None, "substring", "near_duplicate"]
    assert report.matches[2:4] == [3, 0] and report.matches[6:] == [1, 2]
    assert report.counts == {"exact": 1, "normalized": 1, "substring": 1, "near_duplicate": 1,
                             "flagged": 4, "clean": 4, "total": 8}
    assert 0.8 <= report.scores[7] < 1.0 and report.flagged == [2, 3, 6, 7]
    d = json.loads(json.dumps(report.to_dict()))
    assert d["examples"]["near_duplicate"][0]["source"] == NEAR_DUP and d["settings"]["containment"] == 0.8
    # the thresholds move rows between categories and clean
    assert audit(["clever little thriller"], TEST_TEXTS, min_substring_words=3).categories == ["substring"]
    assert audit([NEAR_DUP], TEST_TEXTS, containment=0.95).categories == [None]


def test_categories_are_checked_in_order():
    # a row that is an exact copy is also a substring of a longer target: exact wins
    report = audit(["one two three four"], ["one two three four", "zero one two three four five"])
    assert report.categories == ["exact"] and report.matches == [0]


def test_pairs_leak_by_either_side_against_either_side():
    target = [("the cat sat on the mat today", "a dog barked at the moon all night")]
    source = [
        ("something else entirely here", "The cat sat on the mat today"),  # side b vs target side a
        ("barked at the moon all", "unrelated words in a row"),  # side a inside target side b
        ("unrelated words in a row", "more unrelated words here too"),
    ]
    report = audit(source, target)
    assert report.categories == ["normalized", "substring", None] and report.matches[:2] == [0, 0]


def _random_texts(rng: random.Random, n: int, lo: int, hi: int) -> list[str]:
    vocab = "a b c d e f g the film is n't it 's".split()
    return [" ".join(rng.choice(vocab) for _ in range(rng.randint(lo, hi))) for _ in range(n)]


@pytest.mark.parametrize("min_words, n, c", [(4, 3, 0.8), (2, 3, 0.5), (5, 2, 1.0), (1, 4, 0.6)])
def test_index_gives_the_pairwise_answer(min_words, n, c):
    rng = random.Random(min_words * 100 + n)
    target = _random_texts(rng, 60, 3, 14)
    source = _random_texts(rng, 300, 1, 10) + [t[2:-2] for t in target[:20]]
    fast = audit(source, target, min_words, n, c)
    slow = audit_pairwise(source, target, min_words, n, c)
    assert (fast.categories, fast.matches, fast.scores) == (slow.categories, slow.matches, slow.scores)
    assert fast.counts["near_duplicate"] and fast.counts["substring"]  # the test exercises both


@pytest.mark.parametrize("kwargs, match", [
    ({"min_substring_words": 0}, "min_substring_words must be an integer >= 1"),
    ({"ngram": 2.5}, "ngram must be an integer >= 1"),
    ({"containment": 0.0}, r"containment must be a number in \(0, 1\]"),
    ({"containment": 1.5}, r"containment must be a number in \(0, 1\]"),
    ({"max_examples": -1}, "max_examples must be an integer >= 0"),
])
def test_bad_thresholds_are_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        audit(["a b c"], ["a b c"], **kwargs)


def test_bad_texts_are_data_errors():
    with pytest.raises(DataError, match="source text #1 is int"):
        audit(["fine", 3], ["x"])
    with pytest.raises(DataError, match="not a list of texts"):
        audit("a single string", ["x"])


def test_punctuation_only_and_empty_texts_are_clean():
    assert audit(["...", "", "!!"], ["...", "!!"]).categories == [None, None, None]


# --------------------------------------------------------------------------- tasks and CLI


@pytest.fixture
def leaky_task(tmp_path):
    """A task whose source holds one leak of each category (against the official test split)."""
    def csv(name, rows):
        body = "\n".join(f'"{t.replace(chr(34), chr(34) * 2)}",{"pos" if i % 2 else "neg"}' for i, t in enumerate(rows))
        (tmp_path / name).write_text("text,label\n" + body + "\n")

    csv("train.csv", [f"training sentence number {w} about films" for w in "abcdefghijklmnop"])
    csv("test.csv", TEST_TEXTS)
    csv("source.csv", CLEAN + [EXACT, NORMALIZED, SUBSTRING, NEAR_DUP])
    (tmp_path / "task.yaml").write_text(
        "name: leaky\nkind: classification\ntext: text\nlabel: label\nlabels: [neg, pos]\n"
        "target: {train: train.csv, test: test.csv}\nsource: {all: source.csv}\nval_size: 4\n")
    return str(tmp_path / "task.yaml")


def test_load_task_removes_every_leak_and_keeps_clean_rows(leaky_task):
    task = load_task(leaky_task, shots=2)
    assert list(task.source["text"]) == CLEAN and task.source["idx"] == [0, 1, 2, 3]
    meta = task.meta
    assert meta["leakage_filter"] == "remove" and meta["source_removed"] == 4 and meta["source_total"] == 8
    assert meta["leakage"]["counts"] == {"exact": 1, "normalized": 1, "substring": 1, "near_duplicate": 1}
    assert meta["leakage"]["in_source"] == 0 and meta["leakage"]["settings"]["min_substring_words"] == 4
    assert audit(list(task.source["text"]), task.heldout_texts()).counts["flagged"] == 0


def test_keep_leaky_source_keeps_them_and_says_so(leaky_task):
    task = load_task(leaky_task, shots=2, leakage="keep")
    assert len(task.source) == 8 and task.meta["leakage_filter"] == "keep" and task.meta["source_removed"] == 0
    assert task.meta["leakage"]["flagged"] == task.meta["leakage"]["in_source"] == 4
    looser = load_task(leaky_task, shots=2, leakage_settings={"min_substring_words": 3})
    assert "clever little thriller" not in looser.source["text"] and looser.meta["source_removed"] == 5
    with pytest.raises(ConfigError, match="leakage must be one of"):
        load_task(leaky_task, leakage="drop")
    with pytest.raises(ConfigError, match=r"unknown leakage setting\(s\) \['ngrams'\]"):
        load_task(leaky_task, leakage_settings={"ngrams": 2})


def _last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_audit_command(leaky_task, capsys):
    assert main(["audit", "--task", leaky_task, "--shots", "2", "--json"]) == 0
    out = _last_json(capsys)
    assert {k: out["counts"][k] for k in leakage.CATEGORIES} == {c: 1 for c in leakage.CATEGORIES}
    assert out["source_after_filter"] == {"rows": 4, "leaky": 0} and out["leakage_filter"] == "remove"
    assert out["examples"]["substring"][0]["target_split"] == "test"
    assert main(["audit", "--task", leaky_task, "--shots", "2", "--json", "--keep-leaky-source"]) == 0
    assert _last_json(capsys)["source_after_filter"] == {"rows": 8, "leaky": 4}
    assert main(["audit", "--task", leaky_task, "--shots", "2"]) == 0
    text = capsys.readouterr().out
    assert "near_duplicate" in text and "0 of them leaky" in text
    assert main(["audit", "--task", leaky_task, "--containment", "2"]) == 2
    assert "containment must be a number in (0, 1]" in capsys.readouterr().err

