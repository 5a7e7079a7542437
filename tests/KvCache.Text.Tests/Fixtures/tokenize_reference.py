#!/usr/bin/python3
"""Reference tokenizations for KvCache.Text.Tests, independent of the C# library.

    tokenize_reference.py sp  MODEL_DIR STRINGS_JSON   # python3-sentencepiece: ids and sp.decode(ids) per string
    tokenize_reference.py bpe MODEL_DIR STRINGS_JSON   # GPT-2 byte-level BPE (OpenAI's encoder.py algorithm)

Prints one JSON object: {"ids": [[...], ...], "decoded": ["...", ...]}.

The byte-level BPE reference is the algorithm of OpenAI's GPT-2 encoder.py (bytes_to_unicode, get_pairs, bpe, the
pre-tokenizer regex run by the `regex` module), reading the vocabulary and merges of a Hugging Face tokenizer.json.
Added tokens are split out first, as Hugging Face tokenizers do (leftmost, longest first).
"""
import json
import os
import sys

import regex

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2 ** 8):
        if b not in bs:
            bs.append(b)
            cs.append(2 ** 8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def get_pairs(word):
    return {(a, b) for a, b in zip(word, word[1:])}


class Gpt2Encoder:
    def __init__(self, directory):
        with open(os.path.join(directory, "tokenizer.json"), encoding="utf-8") as f:
            spec = json.load(f)
        self.encoder = spec["model"]["vocab"]
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in spec["model"]["merges"]]
        self.bpe_ranks = dict(zip(merges, range(len(merges))))
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        self.decoder = {v: k for k, v in self.encoder.items()}
        self.added = {t["content"]: t["id"] for t in spec.get("added_tokens", [])}
        for content, i in self.added.items():
            self.decoder[i] = content
        self.pat = regex.compile(GPT2_PATTERN)
        self.cache = {}

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token)
        pairs = get_pairs(word)
        if not pairs:
            return [token]
        while True:
            bigram = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                    new_word.extend(word[i:j])
                    i = j
                except ValueError:
                    new_word.extend(word[i:])
                    break
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = get_pairs(word)
        self.cache[token] = list(word)
        return list(word)

    def encode_plain(self, text):
        ids = []
        for token in regex.findall(self.pat, text):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(token))
        return ids

    def encode(self, text):
        ids, start, i = [], 0, 0
        specials = sorted(self.added, key=len, reverse=True)
        while i < len(text):
            match = next((s for s in specials if text.startswith(s, i)), None)
            if match is None:
                i += 1
                continue
            ids.extend(self.encode_plain(text[start:i]))
            ids.append(self.added[match])
            i += len(match)
            start = i
        ids.extend(self.encode_plain(text[start:]))
        return ids

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            if i in self.added.values():
                out.extend(self.decoder[i].encode("utf-8"))
            else:
                out.extend(self.byte_decoder[c] for c in self.decoder[i])
        return out.decode("utf-8", errors="replace")


def main():
    kind, directory, strings_path = sys.argv[1:4]
    with open(strings_path, encoding="utf-8") as f:
        strings = json.load(f)
    if kind == "sp":
        import sentencepiece as spm
        sp = spm.SentencePieceProcessor(model_file=os.path.join(directory, "tokenizer.model"))
        ids = [sp.encode(s) for s in strings]
        decoded = [sp.decode(i) for i in ids]
    elif kind == "bpe":
        enc = Gpt2Encoder(directory)
        ids = [enc.encode(s) for s in strings]
        decoded = [enc.decode(i) for i in ids]
    else:
        raise SystemExit(f"unknown kind {kind}")
    json.dump({"ids": ids, "decoded": decoded}, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
