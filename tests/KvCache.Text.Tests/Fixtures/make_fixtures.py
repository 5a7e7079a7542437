#!/usr/bin/python3
"""Builds the tokenizer fixtures of KvCache.Text.Tests (deterministic; the outputs are committed).

    apt-get install sentencepiece python3-sentencepiece python3-regex
    /usr/bin/python3 tests/KvCache.Text.Tests/Fixtures/make_fixtures.py

Corpus: bench/quality/heldout.txt (Python source, English comments) plus the multilingual lines below, repeated.

Writes, beside this script:
  spm-bpe/        a Llama-2-style SentencePiece model (spm_train --model_type=bpe, byte fallback, identity
                  normalization, whitespace kept, dummy prefix, digits split) with the ChatML markers
                  <|im_start|> and <|im_end|> as user-defined symbols, plus the tokenizer_config.json a Hugging Face
                  export would carry (bos/eos, added tokens, a ChatML chat template).
  spm-bpe-nobytes/ spm-bpe without byte fallback (its byte pieces removed, as spm_train --byte_fallback=false
                  leaves none): characters outside the vocabulary, newlines among them, become <unk>.
  spm-unigram/    spm_train's defaults (unigram, nmt_nfkc normalization) with byte fallback: what a quick spm_train
                  run gives, as the demo model's may be.
  bpe/            a byte-level BPE tokenizer.json (GPT-2 pre-tokenizer regex, 1,000 merges learnt here by the
                  plain BPE algorithm), with <|endoftext|>, <|im_start|>, <|im_end|> as added special tokens.
  strings.json    1,200 test strings: words, unicode scripts, emoji (ZWJ sequences, flags, skin tones),
                  whitespace runs, digits, code, special-token markers.

The reference tokenizations are not stored: tokenize_reference.py computes them at test time with
python3-sentencepiece and with OpenAI's GPT-2 encoder algorithm (encoder.py), independent of the C# library.
"""
import json
import os
import random
import subprocess
import sys
import tempfile

import regex

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, HERE)
from tokenize_reference import GPT2_PATTERN, bytes_to_unicode  # noqa: E402

MULTILINGUAL = [
    "Le cœur a ses raisons que la raison ne connaît point.",
    "Über den Wolken muss die Freiheit wohl grenzenlos sein.",
    "¿Dónde está la biblioteca? Está aquí, señor.",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.",
    "我能吞下玻璃而不伤身体。",
    "私はガラスを食べられます。それは私を傷つけません。",
    "나는 유리를 먹을 수 있어요. 그래도 아프지 않아요.",
    "أنا قادر على أكل الزجاج و هذا لا يؤلمني.",
    "मैं काँच खा सकता हूँ और मुझे उससे कोई चोट नहीं पहुंचती.",
    "Hello 👋 world 🌍! Family: 👨‍👩‍👧‍👦, flags 🇫🇷🇯🇵, thumbs 👍🏽.",
    "naïve café résumé — “quotes” ‘single’ … ellipsis",
]

SPECIALS = ["<|im_start|>", "<|im_end|>"]

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def corpus_text():
    with open(os.path.join(ROOT, "bench", "quality", "heldout.txt"), encoding="utf-8", errors="replace") as f:
        text = f.read().replace("\x00", "\n")
    return text + "\n" + "\n".join(MULTILINGUAL * 40) + "\n"


def train_spm(corpus_path, out_dir, extra):
    """Runs in the corpus' folder with relative paths: the model records its trainer's arguments."""
    os.makedirs(out_dir, exist_ok=True)
    work = os.path.dirname(corpus_path)
    args = ["spm_train", f"--input={os.path.basename(corpus_path)}", "--model_prefix=tokenizer", "--vocab_size=2000",
            "--character_coverage=1.0", "--byte_fallback=true", "--num_threads=1", "--random_seed=19", "--seed_sentencepiece_size=200000",
            "--input_sentence_size=0", "--shuffle_input_sentence=false", "--minloglevel=2"] + extra
    subprocess.run(args, check=True, cwd=work)
    os.replace(os.path.join(work, "tokenizer.model"), os.path.join(out_dir, "tokenizer.model"))
    os.remove(os.path.join(work, "tokenizer.vocab"))


def without_byte_fallback(source_dir, out_dir):
    """Derives a model from source_dir's, with its byte pieces and byte fallback removed (ids above them shift)."""
    from sentencepiece import sentencepiece_model_pb2 as pb
    model = pb.ModelProto()
    with open(os.path.join(source_dir, "tokenizer.model"), "rb") as f:
        model.ParseFromString(f.read())
    kept = [p for p in model.pieces if p.type != pb.ModelProto.SentencePiece.BYTE]
    del model.pieces[:]
    model.pieces.extend(kept)
    model.trainer_spec.byte_fallback = False
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "tokenizer.model"), "wb") as f:
        f.write(model.SerializeToString())
    spm_config(out_dir, None)


def spm_config(out_dir, template):
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=os.path.join(out_dir, "tokenizer.model"))
    added = {}
    for piece in ["<unk>", "<s>", "</s>"] + SPECIALS:
        i = sp.piece_to_id(piece)
        if sp.id_to_piece(i) == piece:
            added[str(i)] = {"content": piece, "special": True}
    config = {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
              "add_bos_token": True, "add_eos_token": False, "added_tokens_decoder": added}
    if template:
        config["chat_template"] = template
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
        f.write("\n")


def train_bpe(text, merges_wanted):
    """The plain byte-level BPE training loop (most frequent pair first, ties by the pair itself)."""
    b2u = bytes_to_unicode()
    words = {}
    for w in regex.findall(GPT2_PATTERN, text):
        key = tuple(b2u[b] for b in w.encode("utf-8"))
        words[key] = words.get(key, 0) + 1
    vocab = {b2u[b]: i for i, b in enumerate(range(256))}
    # bytes_to_unicode orders printable bytes first; ids follow byte order, which GPT-2 does not, but any order works.
    merges = []
    words = list(words.items())
    while len(merges) < merges_wanted:
        pairs = {}
        for w, n in words:
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + n
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        merges.append(best)
        vocab[best[0] + best[1]] = len(vocab)
        joined = []
        for w, n in words:
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            joined.append((tuple(out), n))
        words = joined
    return vocab, merges


def write_bpe(out_dir, text):
    os.makedirs(out_dir, exist_ok=True)
    vocab, merges = train_bpe(text[:120000], 1000)
    added = []
    for content in ["<|endoftext|>"] + SPECIALS:
        added.append({"id": len(vocab), "content": content, "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": True})
        vocab[content] = len(vocab)
    tokenizer = {
        "version": "1.0",
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "vocab": vocab, "merges": [f"{a} {b}" for a, b in merges]},
    }
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer, f, ensure_ascii=False)
        f.write("\n")
    config = {"tokenizer_class": "GPT2Tokenizer", "bos_token": "<|endoftext|>", "eos_token": "<|im_end|>",
              "chat_template": CHATML}
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
        f.write("\n")


def test_strings(text):
    rng = random.Random(19)
    words = [w for w in regex.findall(r"\S+", text[:60000])][:5000]
    scripts = [w for line in MULTILINGUAL for w in line.split()]
    emoji = ["👋", "🌍", "👨‍👩‍👧‍👦", "🇫🇷", "🇯🇵", "👍🏽", "🤖", "❤️", "✨", "🧑‍💻", "😀😃😄"]
    spaces = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", " \n ", "    \n\n    ", "\u00a0", "\u3000"]
    odd = ["123", "4567890", "3.14159", "1e-5", "x=y+1;", "def f(a, b):", "'s", "'ll", "''", "\"\"", "{}", "[]",
           "a_b", "CamelCase", "ALLCAPS", "über", "Ωmega", "ﬁ", "①", "½", "™", "ｆｕｌｌ"]
    out = []
    while len(out) < 1200:
        parts = []
        for _ in range(rng.randint(1, 12)):
            r = rng.random()
            if r < 0.40:
                parts.append(rng.choice(words))
            elif r < 0.55:
                parts.append(rng.choice(scripts))
            elif r < 0.65:
                parts.append(rng.choice(emoji))
            elif r < 0.80:
                parts.append(rng.choice(spaces))
            elif r < 0.92:
                parts.append(rng.choice(odd))
            else:
                parts.append(rng.choice(SPECIALS))
            if rng.random() < 0.6:
                parts.append(" ")
        s = "".join(parts)
        if rng.random() < 0.2:
            s = " " + s
        out.append(s)
    return out


def main():
    text = corpus_text()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "corpus.txt")
        with open(corpus, "w", encoding="utf-8") as f:
            f.write(text)
        train_spm(corpus, os.path.join(HERE, "spm-bpe"),
                  ["--model_type=bpe", "--normalization_rule_name=identity", "--remove_extra_whitespaces=false",
                   "--split_digits=true",
                   "--user_defined_symbols=" + ",".join(SPECIALS)])
        spm_config(os.path.join(HERE, "spm-bpe"), CHATML)
        without_byte_fallback(os.path.join(HERE, "spm-bpe"), os.path.join(HERE, "spm-bpe-nobytes"))
        train_spm(corpus, os.path.join(HERE, "spm-unigram"), [])
        spm_config(os.path.join(HERE, "spm-unigram"), None)
    write_bpe(os.path.join(HERE, "bpe"), text)
    with open(os.path.join(HERE, "strings.json"), "w", encoding="utf-8") as f:
        json.dump(test_strings(text), f, ensure_ascii=False, indent=0)
        f.write("\n")


if __name__ == "__main__":
    main()
