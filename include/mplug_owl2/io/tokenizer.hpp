// The LLaMA tokenizer as the official code uses it: the slow Hugging Face
// LlamaTokenizer of transformers 4.31 (AutoTokenizer with use_fast=False)
// over tokenizer.model, reproduced on libsentencepiece, plus the official
// rule for prompts with images (mm_utils.tokenizer_image_token).
//
// What the slow tokenizer does with a text, and so what encode() does:
//  1. it splits the text at the special tokens' texts ("<s>", "</s>", "<unk>",
//     the pad and additional special tokens), which become their ids;
//  2. around a special token it strips whitespace only where that token says
//     so (an AddedToken's lstrip/rstrip; a token given as a plain string in
//     special_tokens_map.json strips both sides);
//  3. it encodes each piece of text in between with sentencepiece on its own,
//     so every piece gets sentencepiece's dummy prefix "▁" (legacy mode, the
//     default of transformers 4.31); with "legacy": false in
//     tokenizer_config.json, only the text's start gets one: a piece that
//     follows a special token loses the "▁" of its first token unless it
//     starts with a space (and that shortened token may be <unk>, as in 4.31);
//  4. it puts <s> first (add_bos_token, default true) and </s> last only if
//     add_eos_token is set.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <sentencepiece_processor.h>

#include "../core/error.hpp"
#include "image_token.hpp"

namespace mplug_owl2 {

// The fields of tokenizer_config.json and special_tokens_map.json that change
// how text becomes ids, with LlamaTokenizer's defaults.
struct TokenizerConfig {
    struct Special {
        std::string content;
        bool added_token = true;  // false: a plain string from special_tokens_map.json
        bool lstrip = false, rstrip = false;
    };
    bool add_bos_token = true;
    bool add_eos_token = false;
    bool legacy = true;  // transformers 4.31 when tokenizer_config.json does not say
    bool clean_up_tokenization_spaces = false;
    Special bos{"<s>"}, eos{"</s>"}, unk{"<unk>"};
    std::optional<Special> pad;
    std::vector<Special> additional;

    // Reads `dir`/tokenizer_config.json, then `dir`/special_tokens_map.json,
    // whose values replace the former's as from_pretrained does. Missing
    // files leave the defaults.
    static TokenizerConfig read(const std::string& dir) {
        TokenizerConfig c;
        const std::string cfg_path = dir + "/tokenizer_config.json";
        if (auto cfg = load_json(cfg_path)) {
            const nlohmann::json& j = *cfg;
            c.add_bos_token = get_bool(j, "add_bos_token", c.add_bos_token, cfg_path);
            c.add_eos_token = get_bool(j, "add_eos_token", c.add_eos_token, cfg_path);
            c.legacy = get_bool(j, "legacy", c.legacy, cfg_path);
            c.clean_up_tokenization_spaces =
                get_bool(j, "clean_up_tokenization_spaces", c.clean_up_tokenization_spaces, cfg_path);
            // LlamaTokenizer turns plain-string special tokens into AddedTokens without stripping.
            c.apply(j, cfg_path, /*plain_strings_are_added_tokens=*/true);
        }
        const std::string map_path = dir + "/special_tokens_map.json";
        if (auto map = load_json(map_path)) c.apply(*map, map_path, /*plain_strings_are_added_tokens=*/false);
        return c;
    }

    // Every special token, BOS, EOS, UNK, pad and additional ones.
    std::vector<Special> specials() const {
        std::vector<Special> out = {bos, eos, unk};
        if (pad) out.push_back(*pad);
        out.insert(out.end(), additional.begin(), additional.end());
        return out;
    }

private:
    static std::optional<nlohmann::json> load_json(const std::string& path) {
        struct stat st {};
        if (::stat(path.c_str(), &st) != 0) return std::nullopt;
        std::ifstream in(path);
        if (!in) fail(path, ": cannot open");
        nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
        if (j.is_discarded() || !j.is_object()) fail(path, ": not a JSON object");
        return j;
    }
    static bool get_bool(const nlohmann::json& j, const char* key, bool dflt, const std::string& path) {
        if (!j.contains(key) || j[key].is_null()) return dflt;
        if (!j[key].is_boolean()) fail(path, ": field ", key, " must be true or false");
        return j[key].get<bool>();
    }
    static Special special(const nlohmann::json& v, const std::string& field, const std::string& path,
                           bool plain_strings_are_added_tokens) {
        Special s;
        if (v.is_string()) {
            s.content = v.get<std::string>();
            s.added_token = plain_strings_are_added_tokens;
        } else if (v.is_object() && v.contains("content") && v["content"].is_string()) {
            s.content = v["content"].get<std::string>();
            s.lstrip = v.value("lstrip", false);
            s.rstrip = v.value("rstrip", false);
        } else {
            fail(path, ": field ", field, " must be a string or an object with a \"content\" string");
        }
        if (s.content.empty()) fail(path, ": field ", field, " is empty");
        return s;
    }
    void apply(const nlohmann::json& j, const std::string& path, bool plain) {
        for (auto [key, slot] : {std::pair<const char*, Special*>{"bos_token", &bos}, {"eos_token", &eos},
                                 {"unk_token", &unk}})
            if (j.contains(key) && !j[key].is_null()) *slot = special(j[key], key, path, plain);
        if (j.contains("pad_token") && !j["pad_token"].is_null()) pad = special(j["pad_token"], "pad_token", path, plain);
        if (j.contains("additional_special_tokens") && !j["additional_special_tokens"].is_null()) {
            const auto& a = j["additional_special_tokens"];
            if (!a.is_array()) fail(path, ": field additional_special_tokens must be a list");
            additional.clear();
            for (const auto& v : a) additional.push_back(special(v, "additional_special_tokens", path, plain));
        }
    }
};

// Ids are std::int64_t, as the model takes them (the official torch.long).
class Tokenizer {
public:
    // `path`: a checkpoint folder holding tokenizer.model (and the two JSON
    // files), or a tokenizer.model file whose folder may hold them.
    explicit Tokenizer(const std::string& path) {
        struct stat st {};
        const bool is_dir = ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
        const std::string dir = is_dir ? path : (path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/')));
        init(is_dir ? dir + "/tokenizer.model" : path, TokenizerConfig::read(dir));
    }
    Tokenizer(const std::string& model_file, const TokenizerConfig& config) { init(model_file, config); }

    std::int64_t vocab_size() const { return sp_->GetPieceSize(); }
    std::int64_t bos_id() const { return bos_; }
    std::int64_t eos_id() const { return eos_; }
    std::int64_t unk_id() const { return sp_->unk_id(); }
    const TokenizerConfig& config() const { return config_; }
    std::string piece(std::int64_t id) const {
        check_id(id);
        return sp_->IdToPiece(int(id));
    }
    bool is_special(std::int64_t id) const { return special_of(id) != nullptr; }

    // tokenizer(text).input_ids of the official code.
    std::vector<std::int64_t> encode(const std::string& text) const {
        // 1. Non-legacy mode marks the start of the text with "▁" (and turns literal "▁" into spaces).
        std::string t = text;
        if (!config_.legacy) t = kUnderline + replace_all(text, kUnderline, " ");
        // 2. Split at special tokens, strip where they say so.
        std::vector<Segment> segs = split_specials(t);
        // 3. Encode each piece of text; special tokens are their ids.
        std::vector<std::int64_t> ids;
        if (config_.add_bos_token) ids.push_back(bos_);
        for (const Segment& s : segs) {
            if (s.special) ids.push_back(s.special->id);
            else if (!s.text.empty()) append(ids, encode_segment(s.text));
        }
        if (config_.add_eos_token) ids.push_back(eos_);
        return ids;
    }

    // sentencepiece's own ids for a text (no special tokens, no BOS).
    std::vector<std::int64_t> encode_plain(const std::string& text) const {
        std::vector<int> ids;
        check(sp_->Encode(text, &ids), "encode");
        return std::vector<std::int64_t>(ids.begin(), ids.end());
    }

    // mm_utils.tokenizer_image_token: the prompt is cut at every "<|image|>";
    // each piece is encoded as encode() does (empty pieces give nothing); if the
    // first piece starts with BOS that BOS is kept once and dropped from every
    // piece, otherwise (e.g. a prompt starting with the marker) every piece
    // keeps its own BOS; one kImageTokenIndex stands between pieces.
    std::vector<std::int64_t> encode_prompt(const std::string& prompt) const {
        std::vector<std::vector<std::int64_t>> chunks;
        const std::string marker = kImageToken;
        for (std::size_t start = 0;;) {
            const std::size_t at = prompt.find(marker, start);
            const std::string chunk = prompt.substr(start, at == std::string::npos ? std::string::npos : at - start);
            chunks.push_back(chunk.empty() ? std::vector<std::int64_t>{} : encode(chunk));
            if (at == std::string::npos) break;
            start = at + marker.size();
        }
        const bool keep_bos = !chunks[0].empty() && chunks[0][0] == bos_;
        std::vector<std::int64_t> ids;
        if (keep_bos) ids.push_back(bos_);
        const std::size_t skip = keep_bos ? 1 : 0;
        for (std::size_t k = 0; k < chunks.size(); ++k) {
            if (k > 0) ids.push_back(kImageTokenIndex);
            if (chunks[k].size() > skip) ids.insert(ids.end(), chunks[k].begin() + static_cast<std::ptrdiff_t>(skip), chunks[k].end());
        }
        return ids;
    }

    // tokenizer.decode(ids, skip_special_tokens=...). The official CLI prints
    // with special tokens skipped; it keeps them in the text it stores as the
    // assistant's turn (decode(...).strip()).
    std::string decode(const std::vector<std::int64_t>& ids, bool skip_special_tokens = true) const {
        std::string out;
        std::vector<std::string> run;  // ordinary pieces since the last special token
        bool prev_special = false;
        std::size_t kept = 0;
        for (std::int64_t id : ids) {
            check_id(id);
            const Special* s = special_of(id);
            if (s && skip_special_tokens) continue;
            if (s) {
                // LlamaTokenizer.convert_tokens_to_string: a space before the first of
                // consecutive special tokens (not at the start), then the text so far.
                if (!prev_special && kept != 0) out += ' ';
                out += decode_pieces(run) + s->content;
                run.clear();
                prev_special = true;
            } else {
                run.push_back(sp_->IdToPiece(int(id)));
                prev_special = false;
            }
            ++kept;
        }
        out += decode_pieces(run);
        if (config_.clean_up_tokenization_spaces) out = clean_up(out);
        return out;
    }

private:
    struct Special {
        std::string content;
        std::int64_t id;
        bool lstrip, rstrip;  // strip whitespace left of / right of the token
    };
    struct Segment {
        const Special* special = nullptr;
        std::string text;
    };
    static constexpr const char* kUnderline = "\xe2\x96\x81";  // U+2581, sentencepiece's space

    void init(const std::string& model_file, const TokenizerConfig& config) {
        config_ = config;
        sp_ = std::make_unique<sentencepiece::SentencePieceProcessor>();
        const auto status = sp_->Load(model_file);
        if (!status.ok()) fail(model_file, ": cannot load the sentencepiece model (", status.ToString(), ")");
        model_file_ = model_file;
        // A text that several fields name strips as its AddedToken says; one
        // given only as a plain string strips both sides.
        std::map<std::string, Special> by_text;
        std::map<std::string, bool> has_added;
        for (const auto& s : config_.specials()) {
            const int id = sp_->PieceToId(s.content);
            if (id == sp_->unk_id() && s.content != sp_->IdToPiece(sp_->unk_id()))
                fail(model_file, ": special token ", s.content, " is not a piece of the model (added tokens are not supported)");
            Special& e = by_text[s.content];
            e.content = s.content;
            e.id = id;
            if (s.added_token) {
                e.lstrip = s.lstrip;
                e.rstrip = s.rstrip;
                has_added[s.content] = true;
            } else if (!has_added[s.content]) {
                e.lstrip = e.rstrip = true;
            }
        }
        for (auto& kv : by_text) specials_.push_back(kv.second);
        bos_ = sp_->PieceToId(config_.bos.content);
        eos_ = sp_->PieceToId(config_.eos.content);
    }

    void check(const sentencepiece::util::Status& s, const char* what) const {
        if (!s.ok()) fail(model_file_, ": sentencepiece ", what, " failed (", s.ToString(), ")");
    }
    void check_id(std::int64_t id) const {
        if (id < 0 || id >= vocab_size())
            fail("token id ", id, " is outside the vocabulary of ", model_file_, " (", vocab_size(), " pieces)");
    }
    const Special* special_of(std::int64_t id) const {
        for (const auto& s : specials_)
            if (s.id == id) return &s;
        return nullptr;
    }

    static std::string replace_all(std::string s, const std::string& from, const std::string& to) {
        for (std::size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
            s.replace(at, from.size(), to);
        return s;
    }
    static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
    static void append(std::vector<std::int64_t>& a, const std::vector<std::int64_t>& b) { a.insert(a.end(), b.begin(), b.end()); }

    // The text cut at special tokens (earliest match, longest at a position),
    // with whitespace stripped next to tokens that ask for it.
    std::vector<Segment> split_specials(const std::string& t) const {
        std::vector<Segment> segs;
        std::size_t start = 0;
        for (std::size_t i = 0; i < t.size();) {
            const Special* hit = nullptr;
            for (const auto& s : specials_)
                if (t.compare(i, s.content.size(), s.content) == 0 && (!hit || s.content.size() > hit->content.size()))
                    hit = &s;
            if (!hit) {
                ++i;
                continue;
            }
            if (i > start) segs.push_back({nullptr, t.substr(start, i - start)});
            segs.push_back({hit, hit->content});
            i += hit->content.size();
            start = i;
        }
        if (start < t.size()) segs.push_back({nullptr, t.substr(start)});
        for (std::size_t k = 0; k < segs.size(); ++k) {
            if (!segs[k].special) continue;
            if (segs[k].special->rstrip && k + 1 < segs.size() && !segs[k + 1].special) {
                std::string& r = segs[k + 1].text;
                std::size_t n = 0;
                while (n < r.size() && is_space(r[n])) ++n;
                r.erase(0, n);
            }
            if (segs[k].special->lstrip && k > 0 && !segs[k - 1].special) {
                std::string& l = segs[k - 1].text;
                while (!l.empty() && is_space(l.back())) l.pop_back();
            }
        }
        return segs;
    }

    // One piece of text between special tokens (LlamaTokenizer._tokenize).
    std::vector<std::int64_t> encode_segment(std::string text) const {
        if (config_.legacy) return encode_plain(text);
        const std::string u = kUnderline;
        const bool first = text.compare(0, u.size(), u) == 0;
        if (first) text.erase(0, u.size());
        std::vector<std::string> pieces;
        check(sp_->Encode(text, &pieces), "encode");
        if (!first && (text.empty() || text[0] != ' ') && !pieces.empty() && pieces[0].compare(0, u.size(), u) == 0) {
            if (pieces[0].size() > u.size()) pieces[0].erase(0, u.size());
            else pieces.erase(pieces.begin());
        }
        std::vector<std::int64_t> ids;
        for (const auto& p : pieces) ids.push_back(sp_->PieceToId(p));
        return ids;
    }

    std::string decode_pieces(const std::vector<std::string>& pieces) const {
        std::string text;
        check(sp_->Decode(pieces, &text), "decode");
        return text;
    }

    // clean_up_tokenization of transformers: no space before punctuation and
    // English contractions.
    static std::string clean_up(std::string s) {
        static const std::pair<const char*, const char*> rules[] = {
            {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"},
            {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
        for (const auto& r : rules) s = replace_all(s, r.first, r.second);
        return s;
    }

    std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
    std::string model_file_;
    TokenizerConfig config_;
    std::vector<Special> specials_;
    std::int64_t bos_ = 1, eos_ = 2;
};

}  // namespace mplug_owl2
