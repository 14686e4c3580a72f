"""A subword tokenizer trained on the training split: one vocabulary shared by both languages (so the teacher's and
every student's embeddings and output layer are one matrix, and names and numbers copy across), trained with the
`tokenizers` library and wrapped as a transformers PreTrainedTokenizerFast that saves beside the teacher.

    tok = train_tokenizer(sources + targets, vocab_size=4000, kind="bpe")
    tok("In the beginning")["input_ids"]                 # subword ids, then </s>
    tok.decode(ids, skip_special_tokens=True)            # the text again (the Metaspace decoder restores spaces)
"""
from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from ...errors import ConfigError

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIALS = [PAD, BOS, EOS, UNK]     # ids 0, 1, 2, 3
TOKENIZER_KINDS = ("bpe", "unigram")


def train_tokenizer(texts: list[str], vocab_size: int, kind: str = "bpe") -> PreTrainedTokenizerFast:
    """A BPE or Unigram tokenizer with `vocab_size` entries at most, trained on `texts` in their order
    (deterministic): NFKC normalisation, words split at white space with the space kept as "▁" (so decoding
    restores the text), and </s> after every encoded text."""
    if kind not in TOKENIZER_KINDS:
        raise ConfigError(f"translation.tokenizer must be one of {', '.join(TOKENIZER_KINDS)}, not {kind!r}")
    if kind == "bpe":
        tok = Tokenizer(models.BPE(unk_token=UNK))
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, min_frequency=2,
                                      show_progress=False)
    else:
        tok = Tokenizer(models.Unigram())
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, unk_token=UNK,
                                          show_progress=False)
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(list(texts), trainer=trainer)
    eos = tok.token_to_id(EOS)
    tok.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}",
                                                       special_tokens=[(EOS, eos)])
    return wrap(tok)


def wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    """A `tokenizers` Tokenizer as a transformers tokenizer with the four special tokens."""
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=UNK,
                                   model_max_length=1024, padding_side="right")


def encode_sources(tokenizer, texts: list[str], max_length: int) -> tuple[list[list[int]], int]:
    """Source token ids (each ending with the tokenizer's end token) and how many texts were cut to max_length."""
    return _encode(tokenizer, texts, max_length, target=False)


def encode_targets(tokenizer, texts: list[str], max_length: int) -> tuple[list[list[int]], int]:
    """Target token ids as the decoder learns them (a Marian tokenizer reads targets with its target vocabulary),
    each ending with the end token, and how many were cut to max_length."""
    return _encode(tokenizer, texts, max_length, target=True)


def _encode(tokenizer, texts: list[str], max_length: int, target: bool) -> tuple[list[list[int]], int]:
    if not texts:
        return [], 0
    texts = list(texts)
    kwargs = {"text_target": texts} if target else {"text": texts}
    ids = [list(x) for x in tokenizer(**kwargs, add_special_tokens=True, truncation=False)["input_ids"]]
    eos = tokenizer.eos_token_id
    cut = 0
    for i, x in enumerate(ids):
        if len(x) > max_length:
            ids[i] = x[:max_length - 1] + ([eos] if eos is not None else [x[-1]])
            cut += 1
    return ids, cut


def same_vocabulary(a, b) -> bool:
    """Whether two tokenizers split text into the same ids (the same vocabulary and special tokens)."""
    if a is b:
        return True
    if len(a) != len(b) or a.pad_token_id != b.pad_token_id or a.eos_token_id != b.eos_token_id:
        return False
    return a.get_vocab() == b.get_vocab()
