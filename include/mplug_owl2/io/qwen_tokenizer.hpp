// Qwen-1's tokenizer as mPLUG-Owl2.1 uses it: tokenization_qwen.QWenTokenizer
// (the Qwen-7B release's remote code) over tiktoken, read from qwen.tiktoken,
// plus the official rule for prompts with images (mm_utils.tokenizer_image_token).
//
// What QWenTokenizer does with a text, and so what encode() does:
//  1. it normalises the text to NFC (unicodedata.normalize);
//  2. it cuts the text at the special tokens' texts, every one of them
//     allowed (allowed_special="all", the default since Qwen changed it);
//     each becomes its fixed id: <|endoftext|> 151643, <|im_start|> 151644,
//     <|im_end|> 151645, <|extra_0|>..<|extra_204|> 151646..151850;
//  3. it splits each piece of text in between with the pattern kPattern
//     (letters with one leading non-letter, single digits, punctuation runs,
//     whitespace runs, English contractions), matched by PCRE2 with Unicode
//     classes, as tiktoken's Rust regex matches it;
//  4. it encodes each split as one token if its UTF-8 bytes are one, else by
//     byte-level BPE: from single bytes, it merges the adjacent pair whose
//     bytes form the lowest-ranked token (the leftmost on a tie) until no pair
//     forms a token; a token's id is its rank;
//  5. no BOS or EOS is added (the tokenizer has none).
// Decoding joins the tokens' bytes (a special token's are its text) and reads
// them as UTF-8 with errors="replace": each maximal invalid sequence becomes
// one U+FFFD, as Python's bytes.decode does.
#pragma once

#define PCRE2_CODE_UNIT_WIDTH 8

#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <queue>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include <pcre2.h>
#include <utf8proc.h>

#include "../core/error.hpp"
#include "image_token.hpp"

namespace mplug_owl2 {

class QwenTokenizer {
public:
    static constexpr std::int64_t kSpecialStart = 151643;  // tokenization_qwen.SPECIAL_START_ID
    static constexpr int kExtraTokens = 205;               // <|extra_0|>..<|extra_204|>
    // tokenization_qwen.PAT_STR.
    static constexpr const char* kPattern =
        R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
    // Qwen's qwen.tiktoken is 2.5 MB; a larger file is refused before it is read whole.
    static constexpr std::size_t kMaxFileBytes = std::size_t(64) << 20;

    // `path`: a qwen.tiktoken file, or a checkpoint folder holding one.
    explicit QwenTokenizer(const std::string& path) {
        struct stat st {};
        const bool is_dir = ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
        file_ = is_dir ? path + "/qwen.tiktoken" : path;
        load_ranks(read_file(file_));
        specials_ = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
        for (int k = 0; k < kExtraTokens; ++k) specials_.push_back("<|extra_" + std::to_string(k) + "|>");
        for (std::size_t k = 0; k < specials_.size(); ++k) special_ids_[specials_[k]] = kSpecialStart + std::int64_t(k);
        compile_pattern();
    }

    // tiktoken's n_vocab: one past the largest id, the last extra token's (151851).
    std::int64_t vocab_size() const { return kSpecialStart + std::int64_t(specials_.size()); }
    std::int64_t eos_id() const { return kSpecialStart; }  // eod_id, <|endoftext|>
    std::int64_t im_start_id() const { return kSpecialStart + 1; }
    std::int64_t im_end_id() const { return kSpecialStart + 2; }
    const std::string& file() const { return file_; }
    bool is_special(std::int64_t id) const { return id >= kSpecialStart && id < vocab_size(); }

    // A regular token's bytes, a special token's text.
    const std::string& piece(std::int64_t id) const {
        if (is_special(id)) return specials_[std::size_t(id - kSpecialStart)];
        if (id < 0 || id >= std::int64_t(tokens_.size()) || tokens_[std::size_t(id)].empty())
            fail("token id ", id, " is not in the vocabulary of ", file_);
        return tokens_[std::size_t(id)];
    }

    // tokenizer(text).input_ids of the official code: special tokens' texts are their ids.
    std::vector<std::int64_t> encode(const std::string& text) const { return encode(text, /*allow_special=*/true); }

    // tokenizer(text, allowed_special=set()).input_ids: special tokens' texts
    // are encoded as any other text.
    std::vector<std::int64_t> encode_plain(const std::string& text) const { return encode(text, /*allow_special=*/false); }

    // mm_utils.tokenizer_image_token: the prompt is cut at every "<|image|>";
    // each piece is encoded as encode() does (empty pieces give nothing) and one
    // kImageTokenIndex stands between pieces. QWenTokenizer has no BOS, so no
    // piece loses a first token.
    std::vector<std::int64_t> encode_prompt(const std::string& prompt) const {
        std::vector<std::int64_t> ids;
        const std::string marker = kImageToken;
        for (std::size_t start = 0;;) {
            const std::size_t at = prompt.find(marker, start);
            const std::string chunk = prompt.substr(start, at == std::string::npos ? std::string::npos : at - start);
            if (!chunk.empty()) append(ids, encode(chunk));
            if (at == std::string::npos) return ids;
            ids.push_back(kImageTokenIndex);
            start = at + marker.size();
        }
    }

    // tokenizer.decode(ids, skip_special_tokens=...). Skipping drops every id
    // from 151643 on, as QWenTokenizer._decode does; the default skips, as the
    // official CLI prints (the LLaMA Tokenizer's default too).
    std::string decode(const std::vector<std::int64_t>& ids, bool skip_special_tokens = true) const {
        std::string bytes;
        for (std::int64_t id : ids)
            if (!skip_special_tokens || id < kSpecialStart) bytes += piece(id);
        return utf8_with_replacement(bytes);
    }

private:
    // The file's bytes, at most kMaxFileBytes of them.
    static std::string read_file(const std::string& path) {
        std::ifstream in(path, std::ios::binary);
        if (!in) fail(path, ": cannot open the Qwen vocabulary (qwen.tiktoken)");
        std::string data;
        char buf[1 << 16];
        while (in.read(buf, sizeof buf) || in.gcount() > 0) {
            data.append(buf, std::size_t(in.gcount()));
            if (data.size() > kMaxFileBytes)
                fail(path, ": larger than ", kMaxFileBytes >> 20, " MiB, not a qwen.tiktoken (Qwen's is 2.5 MB)");
        }
        return data;
    }

    // _load_tiktoken_bpe: one "base64-token rank" per line, empty lines skipped.
    // Unlike Python's dict, a repeated token or rank is an error, and ranks must
    // stay below the special tokens' ids.
    void load_ranks(const std::string& data) {
        std::vector<std::size_t> line_of_rank;
        std::size_t line_no = 0;
        for (std::size_t pos = 0; pos < data.size();) {
            // bytes.splitlines: a line ends at \n, \r or \r\n.
            std::size_t end = data.find_first_of("\r\n", pos);
            if (end == std::string::npos) end = data.size();
            const std::string line = data.substr(pos, end - pos);
            pos = end + (data.compare(end, 2, "\r\n") == 0 ? 2 : 1);
            ++line_no;
            const std::vector<std::string> fields = split_fields(line);
            if (fields.empty()) continue;
            const auto where = [&] { return file_ + ":" + std::to_string(line_no) + ": "; };
            if (fields.size() != 2)
                fail(where(), "expected a base64 token and its rank, found ", fields.size(), " fields");
            std::string token;
            if (!base64_decode(fields[0], token)) fail(where(), "the token \"", fields[0].substr(0, 64), "\" is not base64");
            const std::int64_t rank = parse_rank(fields[1]);
            if (rank < 0) fail(where(), "the rank \"", fields[1].substr(0, 64), "\" is not a whole number");
            if (rank >= kSpecialStart)
                fail(where(), "rank ", fields[1].substr(0, 64), " is not below ", kSpecialStart, ", the first special token's id");
            const std::size_t r = std::size_t(rank);
            if (r >= tokens_.size()) {
                tokens_.resize(r + 1);
                line_of_rank.resize(r + 1, 0);
            }
            if (!tokens_[r].empty()) fail(where(), "rank ", rank, " is also the rank of line ", line_of_rank[r]);
            const auto [it, inserted] = ranks_.emplace(token, rank);
            if (!inserted) fail(where(), "the token is also line ", line_of_rank[std::size_t(it->second)], "'s");
            tokens_[r] = token;
            line_of_rank[r] = line_no;
        }
        if (ranks_.empty()) fail(file_, ": holds no tokens");
    }

    // bytes.split(): fields between runs of ASCII whitespace.
    static std::vector<std::string> split_fields(const std::string& line) {
        std::vector<std::string> fields;
        std::size_t i = 0;
        while (i < line.size()) {
            while (i < line.size() && is_ascii_space(line[i])) ++i;
            std::size_t j = i;
            while (j < line.size() && !is_ascii_space(line[j])) ++j;
            if (j > i) fields.push_back(line.substr(i, j - i));
            i = j;
        }
        return fields;
    }
    static bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\v' || c == '\f'; }

    // Decimal digits only; -1 otherwise. Values from kSpecialStart on all read
    // as kSpecialStart, so none overflows.
    static std::int64_t parse_rank(const std::string& s) {
        std::int64_t v = 0;
        for (char c : s) {
            if (c < '0' || c > '9') return -1;
            v = std::min<std::int64_t>(v * 10 + (c - '0'), kSpecialStart);
        }
        return v;
    }

    // Standard base64 with its padding; false on anything else.
    static bool base64_decode(const std::string& in, std::string& out) {
        if (in.size() % 4 != 0) return false;
        const auto value = [](char c) -> int {
            if (c >= 'A' && c <= 'Z') return c - 'A';
            if (c >= 'a' && c <= 'z') return c - 'a' + 26;
            if (c >= '0' && c <= '9') return c - '0' + 52;
            if (c == '+') return 62;
            if (c == '/') return 63;
            return -1;
        };
        out.clear();
        for (std::size_t i = 0; i < in.size(); i += 4) {
            const bool last = i + 4 == in.size();
            const int pad = last ? (in[i + 3] == '=') + (in[i + 2] == '=' && in[i + 3] == '=') : 0;
            std::uint32_t group = 0;
            for (int k = 0; k < 4; ++k) {
                const int v = k >= 4 - pad ? 0 : value(in[i + std::size_t(k)]);
                if (v < 0) return false;
                group = group << 6 | std::uint32_t(v);
            }
            out += char(group >> 16);
            if (pad < 2) out += char(group >> 8 & 0xff);
            if (pad < 1) out += char(group & 0xff);
        }
        return true;
    }

    void compile_pattern() {
        int code = 0;
        PCRE2_SIZE offset = 0;
        pcre2_code* re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kPattern), PCRE2_ZERO_TERMINATED,
                                       PCRE2_UTF | PCRE2_UCP, &code, &offset, nullptr);
        if (!re) fail("PCRE2 cannot compile Qwen's split pattern at offset ", offset, ": ", pcre2_message(code));
        pattern_.reset(re, pcre2_code_free);
    }
    static std::string pcre2_message(int code) {
        PCRE2_UCHAR buf[256];
        pcre2_get_error_message(code, buf, sizeof buf);
        return reinterpret_cast<const char*>(buf);
    }

    // Steps 1-4 of the header comment.
    std::vector<std::int64_t> encode(const std::string& text, bool allow_special) const {
        // 1. NFC (utf8proc refuses text that is not UTF-8).
        const std::string t = nfc(text);
        // 2. Special tokens: each begins with "<|" and ends at the first "|>" after it.
        std::vector<std::int64_t> ids;
        std::size_t start = 0;
        for (std::size_t at = allow_special ? t.find("<|") : std::string::npos; at != std::string::npos;
             at = t.find("<|", at + 1)) {
            const std::size_t close = t.find("|>", at + 2);
            if (close == std::string::npos) break;
            const auto hit = special_ids_.find(t.substr(at, close + 2 - at));
            if (hit == special_ids_.end()) continue;
            encode_ordinary(t.substr(start, at - start), ids);
            ids.push_back(hit->second);
            start = close + 2;
            at = close + 1;
        }
        encode_ordinary(t.substr(start), ids);
        return ids;
    }

    static std::string nfc(const std::string& text) {
        utf8proc_uint8_t* out = nullptr;
        const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                                utf8proc_ssize_t(text.size()), &out,
                                                utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
        if (n < 0) fail("the text to tokenize is not valid UTF-8 (", utf8proc_errmsg(n), ")");
        std::string s(reinterpret_cast<const char*>(out), std::size_t(n));
        std::free(out);
        return s;
    }

    // 3-4. tiktoken's encode_ordinary on text already checked to be UTF-8.
    void encode_ordinary(const std::string& text, std::vector<std::int64_t>& ids) const {
        std::unique_ptr<pcre2_match_data, void (*)(pcre2_match_data*)> match(
            pcre2_match_data_create_from_pattern(pattern_.get(), nullptr), pcre2_match_data_free);
        if (!match) fail("PCRE2 cannot allocate match data");
        const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
        for (std::size_t offset = 0; offset < text.size();) {
            const int rc = pcre2_match(pattern_.get(), subject, text.size(), offset, PCRE2_NO_UTF_CHECK, match.get(), nullptr);
            if (rc == PCRE2_ERROR_NOMATCH) break;
            if (rc < 0) fail("PCRE2 failed on the text to tokenize: ", pcre2_message(rc));
            const PCRE2_SIZE* span = pcre2_get_ovector_pointer(match.get());
            if (span[1] == span[0]) fail("Qwen's split pattern matched nothing at byte ", span[0]);
            const std::string piece = text.substr(span[0], span[1] - span[0]);
            const auto whole = ranks_.find(piece);
            if (whole != ranks_.end()) ids.push_back(whole->second);
            else byte_pair_encode(piece, ids);
            offset = span[1];
        }
    }

    // tiktoken's _byte_pair_merge: of all adjacent pairs of parts, the one
    // whose joined bytes have the lowest rank (the leftmost on a tie) is joined,
    // until no pair forms a token. The pairs wait in a heap ordered by (rank,
    // start), so a long piece costs n log n, not n^2; an entry whose parts have
    // changed since it was pushed is dropped when it comes up.
    void byte_pair_encode(const std::string& piece, std::vector<std::int64_t>& ids) const {
        const std::size_t n = piece.size();
        // Parts as a linked list over their first byte: next[i] is where the
        // part starting at byte i ends (n for the last), prev[i] where the part
        // before it starts; alive[i] whether a part starts at byte i.
        std::vector<std::size_t> next(n), prev(n);
        std::vector<char> alive(n, 1);
        for (std::size_t i = 0; i < n; ++i) next[i] = i + 1, prev[i] = i - 1;  // prev[0] wraps, unused
        using Pair = std::tuple<std::int64_t, std::size_t, std::size_t>;  // rank, start, end
        std::priority_queue<Pair, std::vector<Pair>, std::greater<Pair>> heap;
        const auto push = [&](std::size_t start) {  // the part at start with the one after it
            if (next[start] >= n) return;
            const std::size_t end = next[next[start]];
            const auto it = ranks_.find(piece.substr(start, end - start));
            if (it != ranks_.end()) heap.emplace(it->second, start, end);
        };
        for (std::size_t i = 0; i + 1 < n; ++i) push(i);
        while (!heap.empty()) {
            const auto [rank, start, end] = heap.top();
            heap.pop();
            if (!alive[start] || next[start] >= n || next[next[start]] != end) continue;  // stale
            // Join the part at start with the next one; its pairs with both neighbours change.
            const std::size_t second = next[start];
            alive[second] = 0;
            next[start] = end;
            if (end < n) prev[end] = start;
            push(start);
            if (start > 0) push(prev[start]);
        }
        for (std::size_t i = 0; i < n; i = next[i]) {
            const auto it = ranks_.find(piece.substr(i, next[i] - i));
            if (it == ranks_.end())
                fail(file_, ": has no token for byte 0x", std::hex, int(static_cast<unsigned char>(piece[i])), std::dec,
                     " (a vocabulary needs all 256 single bytes to encode any text)");
            ids.push_back(it->second);
        }
    }

    // bytes.decode("utf-8", errors="replace"): a lead byte followed by the
    // continuation bytes it allows is kept; otherwise the bytes up to the first
    // one that does not fit (or a lone invalid byte) become one U+FFFD.
    static std::string utf8_with_replacement(const std::string& s) {
        static const std::string kReplacement = "\xef\xbf\xbd";
        std::string out;
        for (std::size_t i = 0; i < s.size();) {
            const unsigned char c = static_cast<unsigned char>(s[i]);
            int need = 0;
            unsigned char lo = 0x80, hi = 0xbf;  // the allowed range of the second byte
            if (c < 0x80) need = 0;
            else if (c >= 0xc2 && c <= 0xdf) need = 1;
            else if (c == 0xe0) need = 2, lo = 0xa0;
            else if (c >= 0xe1 && c <= 0xef) need = 2, hi = c == 0xed ? 0x9f : 0xbf;
            else if (c == 0xf0) need = 3, lo = 0x90;
            else if (c >= 0xf1 && c <= 0xf3) need = 3;
            else if (c == 0xf4) need = 3, hi = 0x8f;
            else need = -1;  // a continuation byte, C0, C1 or F5..FF alone
            if (need < 0) {
                out += kReplacement;
                ++i;
                continue;
            }
            std::size_t j = i + 1;
            int k = 0;
            for (; k < need && j < s.size(); ++k, ++j) {
                const unsigned char d = static_cast<unsigned char>(s[j]);
                if (d < (k == 0 ? lo : 0x80) || d > (k == 0 ? hi : 0xbf)) break;
            }
            if (k == need) out.append(s, i, j - i);
            else out += kReplacement;
            i = j;
        }
        return out;
    }

    static void append(std::vector<std::int64_t>& a, const std::vector<std::int64_t>& b) { a.insert(a.end(), b.begin(), b.end()); }

    std::string file_;
    std::vector<std::string> tokens_;                       // [rank] -> bytes; empty where no token has that rank
    std::unordered_map<std::string, std::int64_t> ranks_;   // bytes -> rank
    std::vector<std::string> specials_;                     // [id - kSpecialStart] -> text
    std::unordered_map<std::string, std::int64_t> special_ids_;
    std::shared_ptr<pcre2_code> pattern_;
};

}  // namespace mplug_owl2
