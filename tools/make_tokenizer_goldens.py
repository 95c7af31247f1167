#!/usr/bin/env python3
"""Writes tests/golden/tokenizer/*.json: token ids from HF `tokenizers` (the oracle) for qforge's tokenizer tests.

Each golden names a base tokenizer.json from ../shared/data/models plus optional top-level overrides
(pre_tokenizer, normalizer, decoder, added tokens, BPE flags), so the tests cover components the shared
models do not use (Qwen2 / Llama-3 Split regexes, Metaspace, Digits, ...) without committing large files.
For each golden: ids of tricky strings (with and without the template's special tokens), decoded text,
and, for whole shared text files, the token count and an FNV-1a 64 hash of the space-joined ids.

Usage (needs `pip install tokenizers`; never a dependency of qforge or its CI):
    python3 tools/make_tokenizer_goldens.py [--shared ../shared] [--out tests/golden/tokenizer]
"""
import argparse
import copy
import json
import os

import tokenizers
from tokenizers import Tokenizer

QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")

COMMON = [
    "",
    "Hello world",
    "Hello, world! How are you today?",
    "  two leading spaces",
    "trailing spaces   ",
    "multiple     spaces   between  words",
    "tabs\tand\nnewlines\n\n\nend",
    "CRLF line\r\nnext line\r\n\r\nlast",
    "   ",
    "\n",
    " \n \n",
    "It's what they'll do; we've, I'm, you'd, she's",
    "IT'S LOUD, THEY'LL SEE",
    "1234567890 3.14159 1,000,000 and 42nd",
    "!!! ??? ... --- ((())) [a] {b} <c>",
    "Ünïcödé naïve café — “quotes” … ½ ² ٣ ⅷ",
    "中文字符 日本語のテキスト 한국어 Ελληνικά русский текст עברית العربية",
    "emoji 😀👍🏽 family 👨‍👩‍👧 flag 🇫🇷 done",
    "odd spaces a\u00a0b\u3000c\u2028d\u0085e\u2009f\u200bg",
    "control \x00\x01\x07\x7f chars",
    "combining e\u0301 vs \u00e9, n\u0303",
    "supercalifragilisticexpialidocious " * 3,
    "mixed123abc 4x4 x86_64 snake_case CamelCase",
    "email: someone@example.com, url: https://example.org/a?b=c&d=e#f",
    "Chapter 1\n\n\nIt is a truth universally acknowledged, that a single man in possession\nof a good fortune,",
    "rare spaces \u180e\ufeff\u200b\u1680x\u205f\u00a0 \u00a0",
    " " * 300 + "x",
    "\n" * 150,
    "x" + "\t " * 80 + "\n",
    "\u0301 starts with a mark, then a\u0301\u0302b and \u0663\u0664 and _under_score_",
]

WORD_CLASS_STRINGS = [
    "x\u2167y z\u0663w a\u00b2b c\u0301d e\u203ff g\u00bdh \u3007i \u02b0j \u00aak",
    "it's [a]^b ]c[ x_y-z \u200dq",
    "x\u24c5y z\u200dw a\u00b2b c\u0301d e\u203ff g\u00bdh \u3007i \u02b0j \u00aak l\u0345m n\u1885o p\u2160q r\u2070s"
    " t\u2460u \U00010140v \u0660w \uff3fx \u00b5\u00bay",
    "\u24c5rls \u00b9\u00bc\u00be\u00b3 \u2070\u2460",
]

PREFIX_DECODE_STRINGS = ["😀👍🏽 👨‍👩‍👧 🇫🇷 Ünïcödé 中文 ½"]

# Strings whose code points are all below U+0300 (qforge's NFC covers exactly those).
LATIN = [s for s in COMMON if all(ord(c) < 0x300 for c in s)]

BYTE_LEVEL_SPECIAL = [
    "before<|endoftext|>after",
    " <|endoftext|> spaced ",
    "<|endoftext|><|endoftext|>",
    "<|endoftext|>",
    "<|endoftext|",
    "x <|im_start|>user\nhi<|im_end|>\n",
]
SP_SPECIAL = [
    "<s>start",
    "a <s> b </s> c <unk>",
    "</s></s>",
    "x [MASK] y",
    "x[MASK]y",
    "lone  [MASK]  spaces",
]

FILES_BYTE_LEVEL = [
    ("data/text/janeausten/persuasion.txt", None),
    ("data/text/wikitext2/wiki.test.txt", None),
]
FILES_SP = [
    ("data/text/janeausten/prideprejudice.txt", None),
    ("data/text/wikitext2/wiki.test.txt", "crlf"),
]

BYTE_LEVEL_NO_REGEX = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
EXTRA_BYTE_LEVEL_TOKENS = [
    {"id": 8192, "content": "<|im_start|>", "single_word": False, "lstrip": False, "rstrip": False,
     "normalized": False, "special": True},
    {"id": 8193, "content": "<|im_end|>", "single_word": False, "lstrip": False, "rstrip": False,
     "normalized": False, "special": True},
]
EXTRA_SP_TOKENS = [
    {"id": 512, "content": "[MASK]", "single_word": False, "lstrip": True, "rstrip": True,
     "normalized": False, "special": True},
]

EXTRA_FLAG_TOKENS = [
    {"id": 512, "content": "hello world", "single_word": False, "lstrip": False, "rstrip": False,
     "normalized": True, "special": False},
    {"id": 513, "content": "<sw>", "single_word": True, "lstrip": False, "rstrip": False,
     "normalized": False, "special": True},
    {"id": 514, "content": "[L]", "single_word": False, "lstrip": True, "rstrip": False,
     "normalized": False, "special": True},
    {"id": 515, "content": "[R]", "single_word": False, "lstrip": False, "rstrip": True,
     "normalized": False, "special": False},
]
FLAG_STRINGS = [
    "say hello world now",
    "hello worldly hello world",
    "x<sw>y",
    "x <sw> y",
    "<sw>",
    "a  [L]  b  [R]  c",
    "[R]   [L]",
    "[L][R][L]",
    "\u3000[L]\u3000",
    "a <sw>\u0301 b <sw>\u200d c \u00bd<sw>\u2167",
]

# name -> (base model dir, overrides, strings, files)
VARIANTS = {
    "llama_dense_bytelevel": ("data/models/llama-dense-26M", {}, COMMON + BYTE_LEVEL_SPECIAL, FILES_BYTE_LEVEL),
    "stories260k_sentencepiece": ("data/models/stories260K/hf", {}, COMMON + SP_SPECIAL, FILES_SP),
    "qwen2_split_bytelevel": ("data/models/llama-dense-26M", {
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_PATTERN}, "behavior": "Isolated", "invert": False},
            BYTE_LEVEL_NO_REGEX]},
        "normalizer": {"type": "NFC"},
        "added_tokens+": EXTRA_BYTE_LEVEL_TOKENS,
    }, LATIN + BYTE_LEVEL_SPECIAL, FILES_BYTE_LEVEL[:1]),
    "llama3_split_ignore_merges": ("data/models/llama-dense-26M", {
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN}, "behavior": "Isolated", "invert": False},
            BYTE_LEVEL_NO_REGEX]},
        "model.ignore_merges": True,
        "post_processor": {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": "<|endoftext|>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [0], "tokens": ["<|endoftext|>"]}}}]},
        "added_tokens+": EXTRA_BYTE_LEVEL_TOKENS,
    }, COMMON + BYTE_LEVEL_SPECIAL, FILES_BYTE_LEVEL[:1]),
    "bytelevel_digits_punct_prefix": ("data/models/llama-dense-26M", {
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "Punctuation", "behavior": "Isolated"},
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}]},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
    }, COMMON + BYTE_LEVEL_SPECIAL, []),
    "bytelevel_split_behaviors": ("data/models/llama-dense-26M", {
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithNext", "invert": False},
            {"type": "Split", "pattern": {"Regex": r"[,.;!?]"}, "behavior": "MergedWithPrevious", "invert": False},
            {"type": "Split", "pattern": {"Regex": r"\p{N}"}, "behavior": "Contiguous", "invert": False},
            {"type": "Split", "pattern": {"Regex": r"\n"}, "behavior": "Removed", "invert": False},
            {"type": "Digits", "individual_digits": False},
            BYTE_LEVEL_NO_REGEX]},
    }, COMMON, []),
    "metaspace_first_mistral": ("data/models/stories260K/hf", {
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False},
            {"type": "ByteFallback"}, {"type": "Fuse"}]},
        "added_tokens+": EXTRA_SP_TOKENS,
    }, COMMON + SP_SPECIAL, []),
    "metaspace_always_split": ("data/models/stories260K/hf", {
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True},
        "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True},
        "added_tokens+": EXTRA_SP_TOKENS,
    }, COMMON + SP_SPECIAL, []),
    "sentencepiece_whitespace_strip_regex": ("data/models/stories260K/hf", {
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Strip", "strip_left": True, "strip_right": True},
            {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "},
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "model.fuse_unk": False,
        "model.byte_fallback": False,
    }, COMMON + SP_SPECIAL, []),
    "sentencepiece_added_token_flags": ("data/models/stories260K/hf", {
        "added_tokens+": EXTRA_FLAG_TOKENS,
    }, COMMON[:12] + FLAG_STRINGS + SP_SPECIAL, []),
    "bytelevel_onig_word_classes": ("data/models/llama-dense-26M", {
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": r"[\w']+|[^\w\s]+"}, "behavior": "Isolated", "invert": False},
            {"type": "Split", "pattern": {"Regex": r"\W+"}, "behavior": "MergedWithPrevious", "invert": False},
            {"type": "Split", "pattern": {"Regex": r"\w{3}"}, "behavior": "Isolated", "invert": False},
            BYTE_LEVEL_NO_REGEX]},
    }, COMMON + WORD_CLASS_STRINGS, []),
    "sentencepiece_whitespace_pretok": ("data/models/stories260K/hf", {
        "normalizer": None,
        "pre_tokenizer": {"type": "Whitespace"},
        "model.byte_fallback": False,
    }, COMMON + SP_SPECIAL, []),
}


def fnv1a64(s: str) -> str:
    h = 0xcbf29ce484222325
    for b in s.encode("utf-8"):
        h ^= b
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def apply_overrides(base: dict, overrides: dict) -> dict:
    j = copy.deepcopy(base)
    for key, value in overrides.items():
        if key == "added_tokens+":
            j["added_tokens"] = j["added_tokens"] + value
        elif key.startswith("model."):
            j["model"][key[len("model."):]] = value
        else:
            j[key] = value
    return j


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(here, "..", "..", "shared"))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "golden", "tokenizer"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name, (base_dir, overrides, strings, files) in VARIANTS.items():
        with open(os.path.join(args.shared, base_dir, "tokenizer.json"), encoding="utf-8") as f:
            base = json.load(f)
        tok = Tokenizer.from_str(json.dumps(apply_overrides(base, overrides)))
        cases = []
        for s in strings:
            plain = tok.encode(s, add_special_tokens=False).ids
            cases.append({
                "text": s,
                "ids": plain,
                "ids_with_template": tok.encode(s, add_special_tokens=True).ids,
                "decoded": tok.decode(plain, skip_special_tokens=False),
                "decoded_skip_special": tok.decode(plain, skip_special_tokens=True),
            })
        # Decoding every prefix of the ids cuts multi-byte characters (what a streaming preview sees).
        prefix_decodes = []
        for s in PREFIX_DECODE_STRINGS:
            ids = tok.encode(s, add_special_tokens=False).ids
            prefix_decodes.append({"ids": ids, "decoded": [tok.decode(ids[:k], skip_special_tokens=False)
                                                           for k in range(len(ids) + 1)]})
        file_entries = []
        for path, transform in files:
            with open(os.path.join(args.shared, path), encoding="utf-8", newline="") as f:
                text = f.read()
            if transform == "crlf":
                text = text.replace("\n", "\r\n")
            ids = tok.encode(text, add_special_tokens=False).ids
            file_entries.append({"path": path, "transform": transform, "count": len(ids),
                                 "fnv1a64": fnv1a64(" ".join(map(str, ids))), "first_ids": ids[:64],
                                 "last_ids": ids[-64:]})
        golden = {
            "generated_by": "tools/make_tokenizer_goldens.py",
            "tokenizers_version": tokenizers.__version__,
            "base": base_dir,
            "overrides": overrides,
            "hash": "FNV-1a 64 of the ids joined by single spaces (decimal, UTF-8)",
            "cases": cases,
            "prefix_decodes": prefix_decodes,
            "files": file_entries,
        }
        out = os.path.join(args.out, f"{name}.json")
        with open(out, "w", encoding="utf-8") as f:
            # One line per case / file keeps the goldens small and their diffs readable.
            f.write("{\n")
            for i, (key, value) in enumerate(golden.items()):
                f.write(f" {json.dumps(key)}: ")
                if key in ("cases", "files", "prefix_decodes"):
                    f.write("[\n" + ",\n".join("  " + json.dumps(v, separators=(",", ":")) for v in value) + "\n ]")
                else:
                    f.write(json.dumps(value, separators=(",", ":")))
                f.write(",\n" if i + 1 < len(golden) else "\n")
            f.write("}\n")
        print(f"wrote {out}: {len(cases)} strings, {len(file_entries)} files")


if __name__ == "__main__":
    main()
