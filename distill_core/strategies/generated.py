"""Generated distillation data: unlabelled transfer texts and augmented copies of the training texts.

A variant with `generated: true` also learns from these examples. Their targets are the teacher's outputs on
them (soft labels): no true label of a generated example ever reaches a student, not even for the "unused" rows
of the dataset, whose labels exist but are dropped here.

    transfer texts   config.TransferConfig.source: "unused" rows no split took, or a .csv/.jsonl/.txt file of texts
    augmented copies `copies` per training example, each changing about `fraction` of its words: a nearest
                     neighbour in the teacher's embedding table, [MASK], a deletion, or a swap with the next word
                     (TinyBERT's data augmentation, Jiao et al. 2020, without its masked-LM proposals)

Everything here is pure and seeded: the same config, splits and teacher give the same examples.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..batching import encode
from ..config import TransferConfig
from ..errors import ConfigError, DataError
from ..modality.text.data import read_raw_table, read_text_file, text_key
from ..sources import file_label

TRANSFER, AUGMENTED = "transfer", "augmented"
UNUSED_LABEL = "unused rows of the dataset"
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".ndjson")
TEXT_SUFFIXES = (".txt",)
MAX_FILE_MB = 50.0           # a transfer file above this is refused (as data.max_file_mb's default)
NEIGHBOURS_K = 8
CHUNK = 1024                 # query tokens per block of the neighbour search: (CHUNK, M) similarities at a time


@dataclass
class GeneratedData:
    """The generated examples of a session, transfer texts first, then augmented copies.

    ids[i]: token ids with special tokens; kinds[i]: "transfer" or "augmented"; origin[i]: the index of the
    training example an augmented copy comes from (None for transfer texts); changed[i]: positions in ids[i] that
    differ from the original (deletions leave no mark; [] for transfer texts). No labels: the teacher gives them."""
    ids: list[list[int]] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    origin: list[int | None] = field(default_factory=list)
    changed: list[list[int]] = field(default_factory=list)
    source: str = ""
    notices: list[str] = field(default_factory=list)
    images: np.ndarray | None = None       # image sessions: uint8 (N, H, W, C) in place of ids

    def __len__(self) -> int:
        return len(self.images) if self.images is not None else len(self.ids)

    def counts(self) -> dict[str, int]:
        transfer = sum(k == TRANSFER for k in self.kinds)
        augmented = sum(k == AUGMENTED for k in self.kinds)
        return {TRANSFER: transfer, AUGMENTED: augmented, "total": transfer + augmented}


# ---- transfer texts -----------------------------------------------------------------------------------------
def source_label(cfg: TransferConfig) -> str:
    """How the transfer source is named to a user: "none", "unused rows of the dataset" or the file's name."""
    if cfg.source in ("none", "unused"):
        return UNUSED_LABEL if cfg.source == "unused" else "none"
    return file_label(cfg.source)


def _clean_texts(values) -> list[str]:
    """The non-empty texts among cell values (numbers are read as text; empty, missing and nested values dropped)."""
    out = []
    for v in values:
        if v is None or isinstance(v, (list, dict)) or (isinstance(v, float) and math.isnan(v)):
            continue
        s = str(v).strip()
        if s:
            out.append(s)
    return out


def _read_text_file(path: Path, max_file_mb: float) -> list[str]:
    """One text per non-empty line of a UTF-8 .txt file."""
    return _clean_texts(read_text_file(path, max_file_mb, "transfer file", "use a smaller sample of it")
                        .splitlines())


def _read_file_texts(cfg: TransferConfig, max_file_mb: float) -> list[str]:
    path = Path(cfg.source).expanduser()
    name = file_label(path)
    if not path.is_file():
        raise DataError(f"transfer file {cfg.source} does not exist; set transfer.source to an existing .csv, "
                        f".jsonl or .txt file of texts, or to unused or none")
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return _read_text_file(path, max_file_mb)
    if suffix not in TABLE_SUFFIXES:
        raise DataError(f"transfer file {name}: unknown file type {suffix!r}; use a .csv or .jsonl file with a text "
                        f"column, or a .txt file with one text per line")
    df = read_raw_table(path, max_file_mb)
    cols = [str(c) for c in df.columns]
    if cfg.text_column not in cols:
        raise DataError(f"transfer file {name} has no text column {cfg.text_column!r}; its columns are: "
                        f"{', '.join(cols) or '(none)'}. Set transfer.text_column to the one that holds the texts")
    return _clean_texts(df[cfg.text_column].tolist())


def hold_out_from_teacher(cfg: TransferConfig, splits):
    """(the splits the teacher learns from, the transfer pool): with cfg.held_out_from_teacher the dataset's unused
    rows are divided in two seeded halves, the teacher keeping the first as its extra rows and the second becoming
    the transfer pool, whose labels no model sees; otherwise (splits, None), the pool being every unused row.

    The pool is {"texts", "labels", "teacher_rows", "transfer_rows"}, the rows given as positions among the unused
    rows (the run records them). The teacher's splits get another fingerprint, so it is fine-tuned (and cached)
    apart from a teacher that learned every unused row."""
    if not cfg.held_out_from_teacher:
        return splits, None
    n = len(splits.extra_texts)
    if n < 2:
        raise DataError(f"transfer.held_out_from_teacher divides the dataset's unused rows between the teacher and "
                        f"the transfer texts, but it has {n}: lower data.train_size (or the other split sizes) to "
                        f"leave rows out, or set held_out_from_teacher to false")
    order = np.random.default_rng(cfg.seed).permutation(n)
    teacher_rows, transfer_rows = np.sort(order[:n // 2]).tolist(), np.sort(order[n // 2:]).tolist()
    kept = dataclasses.replace(splits, extra_texts=[splits.extra_texts[i] for i in teacher_rows],
                               extra_labels=[splits.extra_labels[i] for i in teacher_rows],
                               fingerprint=f"{splits.fingerprint}|held-out-{cfg.seed}", teacher_order=None)
    pool = {"texts": [splits.extra_texts[i] for i in transfer_rows],
            "labels": [splits.extra_labels[i] for i in transfer_rows],
            "teacher_rows": teacher_rows, "transfer_rows": transfer_rows}
    return kept, pool


def load_transfer_texts(cfg: TransferConfig, splits, max_file_mb: float = MAX_FILE_MB) -> list[str]:
    """The transfer texts cfg.source names, at most cfg.max_texts of them (a seeded choice, in file order)."""
    return load_transfer_rows(cfg, splits, max_file_mb=max_file_mb)[0]


def load_transfer_rows(cfg: TransferConfig, splits, pool: dict | None = None,
                       max_file_mb: float = MAX_FILE_MB) -> tuple[list[str], list[int] | None]:
    """(texts, labels): the transfer texts cfg.source names, at most cfg.max_texts of them (a seeded choice, in
    file order), and their true labels where the source has them (labels: None for a file of texts).

    "none": []; "unused": splits.extra_texts, or the held-out half `pool` (hold_out_from_teacher); a file: its texts.
    The labels reach no student but a transfer_labels variant (the labels-only reference). Raises DataError with
    the fix when the source gives no text."""
    labels = None
    if cfg.source == "none":
        return [], None
    if cfg.source == "unused":
        texts = list(pool["texts"] if pool is not None else splits.extra_texts)
        labels = list(pool["labels"] if pool is not None else splits.extra_labels)
        if not texts:
            raise DataError("transfer.source is unused, but the dataset has no unused rows: all of its rows are in the "
                            "training, validation and test splits. Lower data.train_size (or the other split sizes) "
                            "to leave rows out, set transfer.source to a .csv, .jsonl or .txt file of texts, or set it "
                            "to none and transfer.copies to make augmented copies of the training texts instead")
    else:
        texts = _read_file_texts(cfg, max_file_mb)
        if not texts:
            where = "" if Path(cfg.source).suffix.lower() in TEXT_SUFFIXES else f" in column {cfg.text_column!r}"
            raise DataError(f"transfer file {file_label(cfg.source)} holds no non-empty texts{where}; add texts to "
                            f"it, choose another transfer.text_column, or set transfer.source to unused or none")
    if len(texts) > cfg.max_texts:
        keep = np.sort(np.random.default_rng(cfg.seed).choice(len(texts), cfg.max_texts, replace=False))
        texts = [texts[i] for i in keep]
        labels = [labels[i] for i in keep] if labels is not None else None
    return texts, labels


def kept_positions(texts: list[str], held_out: list[str]) -> list[int]:
    """Positions of the texts not equal (text_key) to a validation or test text."""
    keys = {text_key(t) for t in held_out}
    return [i for i, t in enumerate(texts) if text_key(t) not in keys]


def drop_held_out(texts: list[str], held_out: list[str]) -> tuple[list[str], int]:
    """texts without those equal (text_key) to a validation or test text, and how many were dropped: a student must
    not see the texts it is tested on, even with the teacher's labels."""
    kept = [texts[i] for i in kept_positions(texts, held_out)]
    return kept, len(texts) - len(kept)


def true_labels(gen: GeneratedData, transfer_labels: list[int], train_labels: list[int]) -> list[int]:
    """The true label of each generated example, for a transfer_labels variant: a transfer text's own (the labels of
    the transfer texts build_generated kept, in order) and an augmented copy's original's."""
    out, k = [], 0
    for kind, origin in zip(gen.kinds, gen.origin):
        if kind == TRANSFER:
            out.append(int(transfer_labels[k]))
            k += 1
        else:
            out.append(int(train_labels[origin]))
    return out


# ---- neighbours in the embedding table ----------------------------------------------------------------------
def word_candidates(tokenizer) -> list[int]:
    """Ids of whole-word alphabetic tokens (no "##" pieces, no [unused..], no special tokens), sorted."""
    special = set(tokenizer.all_special_ids)
    return sorted(i for tok, i in tokenizer.get_vocab().items()
                  if i not in special and not tok.startswith("##") and tok.isalpha())


@torch.no_grad()
def neighbour_table(embedding: torch.Tensor, token_ids: set[int], candidates: list[int],
                    k: int = NEIGHBOURS_K) -> dict[int, list[int]]:
    """For each token of token_ids, its k candidate tokens of highest cosine similarity (itself excluded), best
    first. embedding: (V, D). Computed CHUNK query tokens at a time: (CHUNK, M) similarities, never (V, V)."""
    vocab = embedding.shape[0]
    queries = sorted(t for t in token_ids if 0 <= t < vocab)
    cands = [c for c in candidates if 0 <= c < vocab]
    if not queries or not cands or k < 1:
        return {}
    table = torch.nn.functional.normalize(embedding.detach().float(), dim=1)    # (V, D)
    cand_ids = torch.tensor(cands, dtype=torch.long)
    keys = table[cand_ids]                                                      # (M, D)
    take = min(k + 1, len(cands))          # one more: the token itself may be among the candidates
    out: dict[int, list[int]] = {}
    for start in range(0, len(queries), CHUNK):
        q_ids = torch.tensor(queries[start:start + CHUNK], dtype=torch.long)
        sims = table[q_ids] @ keys.T                                            # (B, M)
        sims[q_ids[:, None] == cand_ids[None, :]] = -math.inf                   # not itself
        top = sims.topk(take, dim=1)
        for row, q in enumerate(q_ids.tolist()):
            best = [cands[j] for j, s in zip(top.indices[row].tolist(), top.values[row].tolist()) if s > -math.inf]
            out[q] = best[:k]
    return out


# ---- augmentation -------------------------------------------------------------------------------------------
def _change_count(n: int, fraction: float, rng: np.random.Generator) -> int:
    """How many of n tokens to change: fraction * n, rounded at random so that the mean is exact; at least one."""
    if n == 0:
        return 0
    exact = fraction * n
    count = int(exact) + int(rng.random() < exact - int(exact))
    return min(n, max(1, count))


def _augment_one(seq: list[int], fraction: float, ops: tuple[str, ...], rng: np.random.Generator,
                 special_ids: set[int], mask_id: int | None,
                 neighbours: dict[int, list[int]]) -> tuple[list[int], list[int]]:
    """One augmented copy of seq: (new ids, changed positions in them). A swap changes two tokens, a deletion one."""
    toks = list(seq)
    words = [p for p, t in enumerate(toks) if t not in special_ids]
    budget = _change_count(len(words), fraction, rng)
    touched: set[int] = set()
    deleted: set[int] = set()
    for p in rng.permutation(words).tolist():
        if budget <= 0:
            break
        if p in touched:
            continue
        q = p + 1
        can_swap = (q < len(toks) and toks[q] not in special_ids and q not in touched and toks[q] != toks[p])
        feasible = [op for op in ops if
                    (op == "neighbours" and neighbours.get(toks[p])) or
                    (op == "mask" and mask_id is not None and toks[p] != mask_id) or
                    (op == "delete" and len(words) - len(deleted) > 1) or
                    (op == "swap" and can_swap)]
        if budget == 1 and len(feasible) > 1 and "swap" in feasible:
            feasible.remove("swap")        # a swap changes two tokens: keep to the budget when another op can
        if not feasible:
            continue
        op = feasible[int(rng.integers(len(feasible)))]
        if op == "swap" and budget == 1 and touched and rng.random() < 0.5:
            break                          # half the time: on average a last swap then keeps to the budget
        if op == "neighbours":
            options = neighbours[toks[p]]
            toks[p] = options[int(rng.integers(len(options)))]
        elif op == "mask":
            toks[p] = mask_id
        elif op == "delete":
            deleted.add(p)
        else:
            toks[p], toks[q] = toks[q], toks[p]
            touched.add(q)
            budget -= 1
        touched.add(p)
        budget -= 1
    new_index, out = {}, []
    for p, t in enumerate(toks):
        if p not in deleted:
            new_index[p] = len(out)
            out.append(t)
    return out, sorted(new_index[p] for p in touched if p not in deleted)


def augment(ids: list[list[int]], copies: int, fraction: float, ops: tuple[str, ...], seed: int,
            special_ids: set[int], mask_id: int | None,
            neighbours: dict[int, list[int]]) -> list[tuple[list[int], int, list[int]]]:
    """`copies` augmented copies of each sequence of ids, as (new ids, origin index, changed positions in new ids).

    Each copy changes about `fraction` of the sequence's non-special tokens (at least one when it has any), each
    change one of `ops` that can apply there: "neighbours" (a random one of the token's neighbours; tokens without
    neighbours are left alone), "mask" (mask_id), "delete" (the token is removed: later positions shift, nothing is
    marked, but it counts as a change), "swap" (with the next non-special token: both marked). Special tokens never
    change. Seeded: numpy default_rng(seed) over the whole call."""
    rng = np.random.default_rng(seed)
    out = []
    for i, seq in enumerate(ids):
        for _ in range(copies):
            new, changed = _augment_one(seq, fraction, tuple(ops), rng, special_ids, mask_id, neighbours)
            out.append((new, i, changed))
    return out


# ---- the session's generated data ---------------------------------------------------------------------------
def build_generated(cfg: TransferConfig, splits, train_ids: list[list[int]], tokenizer, embedding: torch.Tensor,
                    max_length: int, texts: list[str] | None = None) -> GeneratedData:
    """The transfer texts of cfg.source (tokenised, held-out texts dropped) and cfg.copies augmented copies of each
    training example (train_ids). embedding: the teacher's (V, D) input embedding table, read only when "neighbours"
    is among cfg.ops. texts: the transfer texts when the caller has already read them (load_transfer_texts). An empty
    GeneratedData when cfg is not active."""
    if not cfg.active:
        return GeneratedData(source=source_label(cfg))
    gen = GeneratedData(source=source_label(cfg))
    if texts is None:
        texts = load_transfer_texts(cfg, splits)
    texts, dropped = drop_held_out(texts, splits.val_texts + splits.test_texts)
    if dropped:
        gen.notices.append(f"{dropped:,} transfer text{'s are' if dropped != 1 else ' is'} also in the validation or "
                           f"test split and {'were' if dropped != 1 else 'was'} left out")
    if cfg.source != "none" and not texts:
        gen.notices.append(f"no transfer text of {gen.source} is left once the validation and test texts are left out")
    ids, truncated = encode(tokenizer, texts, max_length)
    if truncated:
        gen.notices.append(f"{truncated:,} transfer text{'s were' if truncated != 1 else ' was'} cut to "
                           f"{max_length} tokens (data.max_length)")
    gen.ids += ids
    gen.kinds += [TRANSFER] * len(ids)
    gen.origin += [None] * len(ids)
    gen.changed += [[] for _ in ids]
    if cfg.copies > 0 and train_ids:
        special = set(tokenizer.all_special_ids)
        mask_id = tokenizer.mask_token_id
        if "mask" in cfg.ops and mask_id is None:
            gen.notices.append("the tokenizer has no mask token: the augmentation does not mask")
        neighbours: dict[int, list[int]] = {}
        if "neighbours" in cfg.ops:
            cands = word_candidates(tokenizer)
            needed = {t for seq in train_ids for t in seq} & set(cands)
            neighbours = neighbour_table(embedding, needed, cands)
        for new, i, changed in augment(train_ids, cfg.copies, cfg.fraction, cfg.ops, cfg.seed, special, mask_id,
                                       neighbours):
            gen.ids.append(new)
            gen.kinds.append(AUGMENTED)
            gen.origin.append(i)
            gen.changed.append(changed)
    return gen


# ---- images ---------------------------------------------------------------------------------------------------
MAX_SHIFT = 2                # pixels, each way
MAX_ROTATION = 10.0          # degrees, each way
NOISE_STD = 8.0              # grey levels (of 255)


def augment_images(images: np.ndarray, copies: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """`copies` augmented copies of each image (N, H, W, C) uint8: a rotation of up to ±10°, a shift of up to ±2
    pixels (the border filled with each image's own border colour) and Gaussian noise (σ = 8 grey levels). Returns
    the copies (N * copies, H, W, C) uint8, copy by copy, and the index of each copy's original."""
    n, h, w, _ = images.shape
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()          # (N, C, H, W)
    border = torch.cat([x[:, :, 0], x[:, :, -1], x[:, :, :, 0], x[:, :, :, -1]], -1).median(-1).values  # (N, C)
    out = []
    for _ in range(copies):
        angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(MAX_ROTATION)
        shift = torch.randint(-MAX_SHIFT, MAX_SHIFT + 1, (n, 2), generator=gen).float()
        cos, sin = angle.cos(), angle.sin()
        theta = torch.stack([torch.stack([cos, -sin, -2 * shift[:, 0] / w], 1),
                             torch.stack([sin, cos, -2 * shift[:, 1] / h], 1)], 1)              # (N, 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        moved = F.grid_sample(x - border[..., None, None], grid, mode="bilinear", padding_mode="zeros",
                              align_corners=False) + border[..., None, None]
        moved = moved + torch.randn(moved.shape, generator=gen) * NOISE_STD
        out.append(moved.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
    origin = [i for _ in range(copies) for i in range(n)]
    return (np.concatenate(out) if out else images[:0]), origin


def build_generated_images(cfg: TransferConfig, splits) -> GeneratedData:
    """Generated data of an image session (splits: images.ImageSplits): the unlabelled images no split took
    (source "unused") and cfg.copies augmented copies of each training image. A file of texts is refused."""
    gen = GeneratedData(source=source_label(cfg))
    if cfg.source not in ("none", "unused"):
        raise ConfigError(f"transfer.source {cfg.source!r} is a file of texts, which image sessions cannot use: set "
                          f"transfer.source to unused (the images no split took) or none, and transfer.copies for "
                          f"augmented copies of the training images")
    parts = []
    if cfg.source == "unused":
        extra = splits.extra_images if splits.extra_images is not None else splits.train_images[:0]
        extra = extra[:cfg.max_texts]
        if not len(extra):
            gen.notices.append("the dataset has no images outside the splits (transfer.source unused): use "
                               "transfer.copies for augmented copies of the training images instead")
        parts.append(extra)
        gen.kinds += [TRANSFER] * len(extra)
        gen.origin += [None] * len(extra)
    if cfg.copies > 0:
        copies, origin = augment_images(splits.train_images, cfg.copies, cfg.seed)
        parts.append(copies)
        gen.kinds += [AUGMENTED] * len(copies)
        gen.origin += origin
    gen.images = np.concatenate(parts) if parts else splits.train_images[:0]
    gen.changed = [[] for _ in gen.kinds]
    return gen


def image_examples_record(gen: GeneratedData, train_images: np.ndarray, teacher_probs: torch.Tensor,
                          label_names: list[str], limit: int = 24) -> dict:
    """generated.json of an image session: the source, counts and notices, and the first `limit` examples of each
    kind with their pixels, the original's pixels (augmented copies), and the teacher's label and confidence."""
    conf, label = teacher_probs.float().max(dim=1)
    shown = {TRANSFER: 0, AUGMENTED: 0}
    examples = []

    def pixels(im):
        return (im[..., 0] if im.shape[-1] == 1 else im).tolist()
    for i, kind in enumerate(gen.kinds):
        if shown[kind] >= limit:
            continue
        shown[kind] += 1
        origin = gen.origin[i]
        examples.append({"kind": kind, "image": pixels(gen.images[i]),
                         "original": pixels(train_images[origin]) if origin is not None else None, "origin": origin,
                         "teacher_label": int(label[i]), "confidence": round(float(conf[i]), 4)})
    return {"source": gen.source, "counts": gen.counts(), "label_names": list(label_names), "modality": "image",
            "notices": list(gen.notices), "examples": examples}


# ---- memory ------------------------------------------------------------------------------------------------
def estimate_mb(n_examples: int, mean_tokens: float, pairs: int, heads: int, need_attention: bool,
                hidden: int = 0, classes: int = 2) -> float:
    """About how many MB (1e6 bytes) the teacher's cached outputs on n_examples take: logits (C,) float32, attention
    (P, H', t, t) float16 when need_attention, hidden states (P, t, D) float16 when hidden > 0; t = mean_tokens
    (an estimate: the mean of t * t is a little more than mean_tokens ** 2)."""
    t = float(mean_tokens)
    per = classes * 4
    if need_attention:
        per += pairs * heads * t * t * 2
    if hidden > 0:
        per += pairs * t * hidden * 2
    return n_examples * per / 1e6


def check_memory(cfg: TransferConfig, n_examples: int, mean_tokens: float, pairs: int, heads: int,
                 need_attention: bool, hidden: int = 0) -> None:
    """ConfigError when the teacher's outputs on the generated data would take more than cfg.max_memory_mb."""
    mb = estimate_mb(n_examples, mean_tokens, pairs, heads, need_attention, hidden)
    if mb > cfg.max_memory_mb:
        raise ConfigError(f"the teacher's outputs on the {n_examples:,} generated examples (about {mean_tokens:.0f} "
                          f"tokens each) would take about {mb:,.0f} MB of memory, above transfer.max_memory_mb "
                          f"({cfg.max_memory_mb:g} MB). Use fewer transfer.copies (now {cfg.copies}) or a lower "
                          f"transfer.max_texts (now {cfg.max_texts}), or raise transfer.max_memory_mb")


# ---- what the run stores ------------------------------------------------------------------------------------
def examples_record(gen: GeneratedData, tokenizer, train_ids: list[list[int]], teacher_probs: torch.Tensor,
                    label_names: list[str], limit: int = 200) -> dict:
    """generated.json: the source, the counts, the notices, and the first `limit` examples of each kind with their
    tokens, the original's tokens and index (augmented copies), the changed positions and the teacher's label and
    confidence.

    teacher_probs: (N, C), row i the teacher's probabilities on gen's example i. No true label is stored."""
    if teacher_probs.shape[0] != len(gen):
        raise ValueError(f"teacher_probs has {teacher_probs.shape[0]} rows for {len(gen)} generated examples")
    conf, label = teacher_probs.float().max(dim=1)                              # (N,), (N,)
    shown = {TRANSFER: 0, AUGMENTED: 0}
    examples = []
    for i, kind in enumerate(gen.kinds):
        if shown[kind] >= limit:
            continue
        shown[kind] += 1
        origin = gen.origin[i]
        examples.append({
            "kind": kind,
            "tokens": tokenizer.convert_ids_to_tokens(gen.ids[i]),
            "original": tokenizer.convert_ids_to_tokens(train_ids[origin]) if origin is not None else None,
            "origin": origin,
            "changed": list(gen.changed[i]),
            "teacher_label": int(label[i]),
            "confidence": round(float(conf[i]), 4),
        })
    return {"source": gen.source, "counts": gen.counts(), "label_names": list(label_names),
            "notices": list(gen.notices), "examples": examples}
