"""Offline tokenizers for the tiny pipeline: the real CLIP BPE vocabulary and a small trained T5 Unigram model."""

from __future__ import annotations

import gzip
import importlib.metadata
import io
import random
from functools import lru_cache
from pathlib import Path
from typing import cast

CLIP_MAX_LENGTH = 77
T5_MAX_LENGTH = 512
T5_EXTRA_IDS = 100
# open_clip's tokenizer keeps the first 48894 merges (49152 - 256 - 2): with 512 byte tokens and 2 specials, 49408 ids.
_CLIP_MERGE_COUNT = 49152 - 256 - 2


def clip_bpe_vocab_path() -> Path:
    """Path of the CLIP BPE vocabulary shipped inside the open_clip_torch wheel (the package is not imported)."""
    dist = importlib.metadata.distribution("open_clip_torch")
    # a PathDistribution locates its files as pathlib paths; str() only satisfies the SimplePath protocol
    path = Path(str(dist.locate_file("open_clip/bpe_simple_vocab_16e6.txt.gz")))
    if not path.is_file():
        raise FileNotFoundError(f"open_clip_torch is installed but {path} is missing")
    return path


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte → printable unicode map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


@lru_cache(maxsize=1)
def clip_merges() -> tuple[tuple[str, str], ...]:
    """The CLIP BPE merges, in rank order."""
    lines = gzip.open(clip_bpe_vocab_path()).read().decode("utf-8").split("\n")
    # each merge line of the vocabulary file is a pair of symbols
    return tuple(cast("tuple[str, str]", tuple(line.split())) for line in lines[1 : _CLIP_MERGE_COUNT + 1])


def clip_vocab() -> dict[str, int]:
    """CLIP's vocabulary as Hugging Face's vocab.json orders it (49408 entries)."""
    byte_chars = list(_bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in clip_merges()]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(tokens)}


def build_clip_tokenizer():
    """A `CLIPTokenizer` with the real CLIP vocabulary and merges."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer(vocab=clip_vocab(), merges=list(clip_merges()), model_max_length=CLIP_MAX_LENGTH)


def _corpus_words(count: int) -> list[str]:
    """The `count` most common plain English words of CLIP's vocabulary (merge order is frequency order)."""
    words: list[str] = []
    for a, b in clip_merges():
        tok = a + b
        if tok.endswith("</w>") and tok[:-4].isascii() and tok[:-4].isalpha():
            words.append(tok[:-4])
            if len(words) == count:
                break
    return words


def _t5_pieces(seed: int, vocab_size: int) -> list[tuple[str, float]]:
    """Train a sentencepiece Unigram model on a generated corpus; return its normal pieces and scores."""
    import sentencepiece as spm

    rng = random.Random(seed)
    words = _corpus_words(4000) + list("0123456789.,!?'\"-:;()")
    zipf = [1.0 / (rank + 10) for rank in range(len(words))]
    sentences = []
    for _ in range(20000):
        sentence = " ".join(rng.choices(words, weights=zipf, k=rng.randint(3, 14)))
        sentences.append(sentence.capitalize() if rng.random() < 0.5 else sentence)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        num_threads=1,
        character_coverage=1.0,
        minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    return [
        (sp.id_to_piece(i), float(sp.get_score(i)))
        for i in range(sp.get_piece_size())
        if not (sp.is_unknown(i) or sp.is_control(i) or sp.is_unused(i))
    ]


def build_t5_tokenizer(seed: int = 0, vocab_size: int = 2000):
    """A `T5TokenizerFast` (Unigram) trained offline; ids as T5: <pad>=0, </s>=1, <unk>=2, pieces, extra ids."""
    # transformers 5 provides the T5TokenizerFast alias only through its lazy module, invisible to mypy
    from transformers import T5TokenizerFast  # type: ignore[attr-defined]

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + _t5_pieces(seed, vocab_size)
    vocab += [(f"<extra_id_{i}>", 0.0) for i in range(T5_EXTRA_IDS - 1, -1, -1)]
    return T5TokenizerFast(vocab=vocab, extra_ids=T5_EXTRA_IDS, model_max_length=T5_MAX_LENGTH)
