// `mplug-owl2 tokenize --tokenizer FILE --prompt TEXT`: the prompt's ids as
// the official code makes them (mm_utils.tokenizer_image_token: every
// "<|image|>" becomes -200), comma-separated on the last line of stdout.
// `mplug-owl2 detokenize --tokenizer FILE --ids 1,2,...`: the text of ids as
// the official code decodes them (special tokens skipped unless
// --keep-special); each -200 is written back as "<|image|>".
//
// The kind of tokenizer is chosen by the file's name (tokenizer_kinds()): a
// sentencepiece model (*.model: LLaMA's tokenizer.model, io/tokenizer.hpp).
// Another kind is one line there: its file ending and the class that reads
// it, which needs a constructor from the file's path, encode_prompt(text)
// and decode(ids, skip_special_tokens).
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "common_options.hpp"
#include "mplug_owl2/io/image_token.hpp"
#include "mplug_owl2/io/tokenizer.hpp"

namespace cli {

// A tokenizer of any kind, as these two commands use it.
class PromptTokenizer {
public:
    virtual ~PromptTokenizer() = default;
    virtual std::vector<std::int64_t> encode_prompt(const std::string& prompt) const = 0;
    // Ids without image markers.
    virtual std::string decode_text(const std::vector<std::int64_t>& ids, bool skip_special) const = 0;

    // The text of ids, each image marker written as "<|image|>".
    std::string decode(const std::vector<std::int64_t>& ids, bool skip_special) const {
        std::string out;
        std::vector<std::int64_t> run;
        for (std::int64_t id : ids) {
            if (id != mplug_owl2::kImageTokenIndex) {
                run.push_back(id);
                continue;
            }
            out += decode_text(run, skip_special) + mplug_owl2::kImageToken;
            run.clear();
        }
        return out + decode_text(run, skip_special);
    }
};

// A tokenizer class seen through PromptTokenizer, whatever its id type.
template <class Tok>
class PromptTokenizerOf : public PromptTokenizer {
public:
    explicit PromptTokenizerOf(const std::string& file) : tok_(file) {}
    std::vector<std::int64_t> encode_prompt(const std::string& prompt) const override {
        const auto ids = tok_.encode_prompt(prompt);
        return std::vector<std::int64_t>(ids.begin(), ids.end());
    }
    std::string decode_text(const std::vector<std::int64_t>& ids, bool skip_special) const override {
        using Id = typename decltype(tok_.encode_prompt(std::string()))::value_type;
        return tok_.decode(std::vector<Id>(ids.begin(), ids.end()), skip_special);
    }

private:
    Tok tok_;
};

struct TokenizerKind {
    std::string ending;  // of the file's name
    std::string what;
    std::function<std::unique_ptr<PromptTokenizer>(const std::string&)> open;
};

template <class Tok>
std::unique_ptr<PromptTokenizer> open_tokenizer_as(const std::string& file) {
    return std::make_unique<PromptTokenizerOf<Tok>>(file);
}

inline const std::vector<TokenizerKind>& tokenizer_kinds() {
    static const std::vector<TokenizerKind> kinds = {
        {".model", "sentencepiece (LLaMA's tokenizer.model)", open_tokenizer_as<mplug_owl2::Tokenizer>},
    };
    return kinds;
}

// The tokenizer of `file`, of the kind its name says.
inline std::unique_ptr<PromptTokenizer> open_prompt_tokenizer(const std::string& file) {
    std::string known;
    for (const TokenizerKind& k : tokenizer_kinds()) {
        if (file.size() >= k.ending.size() && file.compare(file.size() - k.ending.size(), k.ending.size(), k.ending) == 0)
            return k.open(file);
        known += (known.empty() ? "" : ", ") + ("*" + k.ending) + " " + k.what;
    }
    mplug_owl2::fail("--tokenizer ", file, ": unknown kind of tokenizer file; expected ", known);
}

inline void register_tokenize(CLI::App& app) {
    struct Options {
        std::string tokenizer, prompt, ids;
        bool keep_special = false;
    };
    auto o = std::make_shared<Options>();
    const std::string tokenizer_help = "tokenizer file, its kind by its name: *.model (sentencepiece, e.g. tokenizer.model "
                                       "with tokenizer_config.json and special_tokens_map.json beside it)";

    auto* tokenize = app.add_subcommand("tokenize", "Print a prompt's token ids as the official code makes them");
    tokenize->add_option("--tokenizer", o->tokenizer, tokenizer_help)->required();
    tokenize->add_option("--prompt", o->prompt, "the text; each <|image|> becomes -200")->required();
    tokenize->callback([o] { std::cout << ids_text(open_prompt_tokenizer(o->tokenizer)->encode_prompt(o->prompt)) << "\n"; });

    auto* detokenize = app.add_subcommand("detokenize", "Print the text of token ids as the official code decodes them");
    detokenize->add_option("--tokenizer", o->tokenizer, tokenizer_help)->required();
    detokenize->add_option("--ids", o->ids, "token ids, comma-separated; -200 is written as <|image|>")->required();
    detokenize->add_flag("--keep-special", o->keep_special, "keep special tokens (<s>, </s>) in the text");
    detokenize->callback([o] {
        const auto tok = open_prompt_tokenizer(o->tokenizer);
        std::cout << tok->decode(parse_ids(o->ids, "--ids"), !o->keep_special) << "\n";
    });
}

}  // namespace cli
