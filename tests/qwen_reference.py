"""Qwen-1's tokenizer (tokenization_qwen.QWenTokenizer over tiktoken) written
out in plain Python, as a reference for the C++ tests that does not share
their code or their libraries.

Debian's Python has no `regex` module, so Qwen's split pattern
    (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}
    | ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+
is matched here by hand: one function per alternative, tried in order at
each position as a backtracking engine does, with the character classes
from `unicodedata` (\\p{L}: categories L*, \\p{N}: N*) and \\s as the
Unicode White_Space property, which is what tiktoken's Rust regex uses.
BPE is tiktoken's: start from single bytes, merge the adjacent pair whose
concatenation has the lowest rank (the leftmost on a tie) until none is in
the vocabulary. NFC comes from `unicodedata`, decoding from Python's own
bytes.decode(errors="replace"), as Qwen's decode does.
"""
import base64
import unicodedata

SPECIAL_START_ID = 151643
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + [f"<|extra_{i}|>" for i in range(205)]
SPECIAL_IDS = {s: SPECIAL_START_ID + k for k, s in enumerate(SPECIALS)}
IMAGE = "<|image|>"
IMAGE_INDEX = -200

# The Unicode White_Space property (PropList.txt).
WHITE_SPACE = set(chr(c) for c in [*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
                                   0x2028, 0x2029, 0x202F, 0x205F, 0x3000])
# Characters that match 's' etc. case-insensitively (Unicode simple case folding).
FOLDS = {"s": "sS\u017f", "t": "tT", "r": "rR", "e": "eE", "v": "vV", "m": "mM", "l": "lL", "d": "dD"}


def is_letter(c):
    return unicodedata.category(c).startswith("L")


def is_number(c):
    return unicodedata.category(c).startswith("N")


def is_space(c):
    return c in WHITE_SPACE


def contraction(t, i):
    if t[i] != "'":
        return None
    for suffix in ("s", "t", "re", "ve", "m", "ll", "d"):
        j = i + 1
        if all(j + k < len(t) and t[j + k] in FOLDS[ch] for k, ch in enumerate(suffix)):
            return j + len(suffix)
    return None


def letters(t, i):
    # [^\r\n\p{L}\p{N}]?\p{L}+: a letter cannot be the optional character, so
    # the optional one is taken exactly when it is neither letter, digit nor CR/LF.
    j = i
    if not is_letter(t[j]) and not is_number(t[j]) and t[j] not in "\r\n":
        j += 1
    if j >= len(t) or not is_letter(t[j]):
        return None
    while j < len(t) and is_letter(t[j]):
        j += 1
    return j


def number(t, i):
    return i + 1 if is_number(t[i]) else None


def punctuation(t, i):
    # " ?[^\s\p{L}\p{N}]+[\r\n]*"
    def other(c):
        return not is_space(c) and not is_letter(c) and not is_number(c)

    j = i + 1 if t[i] == " " and i + 1 < len(t) and other(t[i + 1]) else i
    if j >= len(t) or not other(t[j]):
        return None
    while j < len(t) and other(t[j]):
        j += 1
    while j < len(t) and t[j] in "\r\n":
        j += 1
    return j


def space_run_end(t, i):
    j = i
    while j < len(t) and is_space(t[j]):
        j += 1
    return j


def spaces_then_newlines(t, i):
    # \s*[\r\n]+: \s* gives back characters until a CR/LF follows, i.e. it
    # stops at the last CR/LF of the run, which [\r\n]+ then takes alone.
    end = space_run_end(t, i)
    for p in range(end - 1, i - 1, -1):
        if t[p] in "\r\n":
            return p + 1
    return None


def spaces_not_before_text(t, i):
    # \s+(?!\S): the whole run at the end of the text, else all of it but the last.
    end = space_run_end(t, i)
    if end == i:
        return None
    if end == len(t):
        return end
    return end - 1 if end - 1 > i else None


def spaces(t, i):
    end = space_run_end(t, i)
    return end if end > i else None


ALTERNATIVES = [contraction, letters, number, punctuation, spaces_then_newlines, spaces_not_before_text, spaces]


def split(text):
    pieces, i = [], 0
    while i < len(text):
        for alternative in ALTERNATIVES:
            end = alternative(text, i)
            if end is not None:
                break
        assert end is not None and end > i, f"nothing matches at {i} in {text!r}"
        pieces.append(text[i:end])
        i = end
    return pieces


def load(path):
    ranks = {}
    with open(path, "rb") as f:
        for line in f.read().splitlines():
            if line:
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
    return ranks


def bpe(piece, ranks):
    if piece in ranks:
        return [ranks[piece]]
    parts = [piece[k:k + 1] for k in range(len(piece))]
    while len(parts) > 1:
        best = None
        for k in range(len(parts) - 1):
            r = ranks.get(parts[k] + parts[k + 1])
            if r is not None and (best is None or r < best[0]):
                best = (r, k)
        if best is None:
            break
        k = best[1]
        parts[k:k + 2] = [parts[k] + parts[k + 1]]
    return [ranks[p] for p in parts]


def encode_ordinary(text, ranks):
    ids = []
    for piece in split(text):
        ids += bpe(piece.encode("utf-8"), ranks)
    return ids


def encode(text, ranks, allow_special=True):
    """tokenizer(text).input_ids: NFC, then every special token's text is its id
    (with allow_special=False, tokenizer(text, allowed_special=set()))."""
    text = unicodedata.normalize("NFC", text)
    ids, start = [], 0
    while True:
        hits = [(text.find(s, start), s) for s in SPECIALS] if allow_special else []
        hits = [(at, s) for at, s in hits if at >= 0]
        if not hits:
            return ids + encode_ordinary(text[start:], ranks)
        at, s = min(hits)
        ids += encode_ordinary(text[start:at], ranks) + [SPECIAL_IDS[s]]
        start = at + len(s)


def encode_prompt(prompt, ranks):
    """mm_utils.tokenizer_image_token with Qwen's tokenizer (no BOS)."""
    ids = []
    for k, chunk in enumerate(prompt.split(IMAGE)):
        if k > 0:
            ids.append(IMAGE_INDEX)
        if chunk:
            ids += encode(chunk, ranks)
    return ids


def decode(ids, ranks, skip_special_tokens=False):
    by_id = {r: t for t, r in ranks.items()}
    by_id.update({i: s.encode() for s, i in SPECIAL_IDS.items()})
    if skip_special_tokens:
        ids = [i for i in ids if i < SPECIAL_START_ID]
    return b"".join(by_id[i] for i in ids).decode("utf-8", errors="replace")
