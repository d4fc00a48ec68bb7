"""The CLIP BPE tokenizer variants the clip_tokenizer case compares, all built on the public merges file.

- `derive_files`: vocab.json / merges.txt from bpe_simple_vocab_16e6.txt.gz exactly as OpenAI's simple_tokenizer
  builds its vocabulary (= the released openai/clip-vit-large-patch14, SD1.5 `tokenizer/` files).
- `OpenAI`: OpenAI CLIP's simple_tokenizer logic (ftfy.fix_text, html.unescape twice, whitespace clean, lower,
  its regex, byte-level BPE), run with open_clip's copy of that code (open_clip renamed the special tokens to
  `<start_of_text>` / `<end_of_text>`; OpenAI's names `<|startoftext|>` / `<|endoftext|>` are restored here).
- `SlowTransformers4`: transformers 4.x's slow CLIPTokenizer with ftfy installed, which transformers 5 no longer
  has: the added special tokens are split off first (exact match), every other chunk goes through
  `whitespace_clean(ftfy.fix_text(chunk)).lower()`, the same regex and BPE. With `ftfy=False` it is the
  no-ftfy fallback (BERT BasicTokenizer(strip_accents=False, do_split_on_punc=False), then the same).
  A pad token "!" (SDXL's tokenizer_2) becomes an added special token and is split off like the others.
"""
import functools
import gzip
import html
import json

import ftfy
import regex
from open_clip.tokenizer import SimpleTokenizer, bytes_to_unicode

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
BOS_ID, EOS_ID = 49406, 49407
PATTERN = regex.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
                        regex.IGNORECASE)


def derive_files(gz_path):
    """(vocab.json text, merges.txt text) derived from the gz merges file."""
    lines = gzip.open(gz_path).read().decode("utf-8").split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m.split()) for m in merges]
    vocab += [BOS, EOS]
    vocab_json = json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False)
    merges_txt = "#version: 0.2\n" + "\n".join(merges) + "\n"
    return vocab_json, merges_txt


def whitespace_clean(text):
    return " ".join(text.split()).strip()


@functools.lru_cache(maxsize=None)
def _simple(gz_path):
    return SimpleTokenizer(bpe_path=gz_path)


class _Bpe:
    def __init__(self, gz_path, vocab):
        self.simple = _simple(str(gz_path))
        self.byte_encoder = bytes_to_unicode()
        self.vocab = vocab
        self.id_to_token = {i: t for t, i in vocab.items()}

    def pieces(self, text):
        """Regex split, byte-level encoding, BPE of already normalised text; special tokens map to themselves."""
        out = []
        for token in regex.findall(PATTERN, text):
            if token in (BOS, EOS):
                out.append(token)
                continue
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            out.extend(self.simple.bpe(token).split(" "))
        return out


class OpenAI(_Bpe):
    def encode(self, text):
        text = ftfy.fix_text(text)
        text = html.unescape(html.unescape(text)).strip()
        return [BOS_ID] + [self.vocab[t] for t in self.pieces(whitespace_clean(text).lower())] + [EOS_ID]

    def open_clip_layout(self, ids, length=77):
        """open_clip.tokenize's row layout for these ids: truncate to `length` keeping EOS last, pad with 0."""
        ids = list(ids)
        if len(ids) > length:
            ids = ids[:length]
            ids[-1] = EOS_ID
        return ids + [0] * (length - len(ids))


class SlowTransformers4(_Bpe):
    def __init__(self, gz_path, vocab, ftfy_installed=True, pad_token=EOS):
        super().__init__(gz_path, vocab)
        self.ftfy = ftfy_installed
        self.specials = [BOS, EOS] + ([pad_token] if pad_token not in (BOS, EOS) else [])
        self.pad_id = vocab[pad_token]
        if not ftfy_installed:
            from transformers.models.bert.tokenization_bert_legacy import BasicTokenizer
            self.basic = BasicTokenizer(strip_accents=False, do_split_on_punc=False)

    def split_specials(self, text):
        """Longest-first exact split on the added tokens (transformers' trie)."""
        specials = sorted(self.specials, key=len, reverse=True)
        pattern = regex.compile("(" + "|".join(regex.escape(s) for s in specials) + ")")
        return [c for c in pattern.split(text) if c]

    def tokens(self, text):
        out = []
        for chunk in self.split_specials(text):
            if chunk in self.specials:
                out.append(chunk)
                continue
            if self.ftfy:
                clean = whitespace_clean(ftfy.fix_text(chunk)).lower()
            else:
                clean = " ".join(self.basic.tokenize(chunk))
            out.extend(self.pieces(clean))
        return out

    def __call__(self, text, max_length=None, add_special_tokens=True):
        """tokenizer(text[, padding="max_length", max_length=..., truncation=True]).input_ids"""
        ids = [self.vocab[t] for t in self.tokens(text)]
        if max_length is None:
            return [BOS_ID] + ids + [EOS_ID] if add_special_tokens else ids
        body = max_length - (2 if add_special_tokens else 0)
        ids = ids[:body]
        ids = [BOS_ID] + ids + [EOS_ID] if add_special_tokens else ids
        return ids + [self.pad_id] * (max_length - len(ids))
