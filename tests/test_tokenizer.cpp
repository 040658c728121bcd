// The tokenizer and the chat template. tests/fixtures/tokenizer holds a small
// LLaMA-style sentencepiece model and expected.json, whose ids were computed
// by make_tokenizer.py with the sentencepiece Python module (the chunk ids
// directly; the special-token, prompt and decode cases with the rules of
// transformers 4.31's slow LlamaTokenizer and mm_utils.tokenizer_image_token
// written out in Python there).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "mplug_owl2/io/conversation.hpp"
#include "mplug_owl2/io/tokenizer.hpp"
#include "mplug_owl2/model/generation.hpp"
#include "mplug_owl2/model/prepare_inputs.hpp"

using namespace mplug_owl2;

namespace {

const std::string kDir = std::string(MPLUG_OWL2_FIXTURE_DIR) + "/tokenizer";

const nlohmann::json& expected() {
    static const nlohmann::json j = [] {
        std::ifstream in(kDir + "/expected.json");
        return nlohmann::json::parse(in);
    }();
    return j;
}

std::vector<std::int64_t> ids(const nlohmann::json& j) { return j.get<std::vector<std::int64_t>>(); }

std::vector<std::int64_t> cat(std::initializer_list<std::vector<std::int64_t>> parts) {
    std::vector<std::int64_t> out;
    for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
    return out;
}

TokenizerConfig non_legacy() {
    TokenizerConfig c = TokenizerConfig::read(kDir);
    c.legacy = false;
    return c;
}

}  // namespace

TEST_CASE("the tokenizer folder loads with LLaMA's special ids", "[tokenizer]") {
    Tokenizer tok(kDir);
    const auto& e = expected();
    CHECK(tok.vocab_size() == e["vocab_size"].get<int>());
    CHECK(tok.vocab_size() == 320);  // fits the tiny reference model
    CHECK(tok.bos_id() == 1);
    CHECK(tok.eos_id() == 2);
    CHECK(tok.unk_id() == 0);
    for (auto it = e["pieces"].begin(); it != e["pieces"].end(); ++it)
        CHECK(tok.piece(std::stoi(it.key())) == it.value().get<std::string>());
    // tokenizer_config.json has no "legacy" field: transformers 4.31 then uses the legacy mode.
    CHECK(tok.config().legacy);
    CHECK(tok.config().add_bos_token);
    CHECK_FALSE(tok.config().add_eos_token);
    REQUIRE(tok.config().pad.has_value());
    CHECK(tok.config().pad->content == "<unk>");
    CHECK(tok.is_special(0));
    CHECK(tok.is_special(1));
    CHECK(tok.is_special(2));
    CHECK_FALSE(tok.is_special(3));
    // The model file alone finds the JSON files beside it.
    CHECK(Tokenizer(kDir + "/tokenizer.model").encode("What is this?") == tok.encode("What is this?"));
}

TEST_CASE("plain text encodes as sentencepiece encodes it", "[tokenizer]") {
    Tokenizer tok(kDir);
    for (const auto& c : expected()["chunk_ids"]) {
        const std::string text = c["text"].get<std::string>();
        INFO("text: \"" << text << "\"");
        CHECK(tok.encode_plain(text) == ids(c["ids"]));
    }
}

TEST_CASE("encode equals the slow LlamaTokenizer in legacy and non-legacy mode", "[tokenizer]") {
    Tokenizer legacy(kDir);
    Tokenizer modern(kDir + "/tokenizer.model", non_legacy());
    for (const auto& c : expected()["input_ids"]) {
        const std::string text = c["text"].get<std::string>();
        INFO("text: \"" << text << "\"");
        CHECK(legacy.encode(text) == ids(c["legacy"]));
        CHECK(modern.encode(text) == ids(c["non_legacy"]));
    }
}

TEST_CASE("every piece of text gets its own dummy prefix and BOS comes first", "[tokenizer]") {
    Tokenizer tok(kDir);
    // A text is BOS + sentencepiece's ids: the dummy "▁" comes from sentencepiece.
    CHECK(tok.encode("Describe the image.") == cat({{1}, tok.encode_plain("Describe the image.")}));
    CHECK(tok.piece(tok.encode_plain("Describe")[0]) == "\xe2\x96\x81");
    // Legacy mode: the text after a special token is encoded on its own, prefix included.
    CHECK(tok.encode("hello</s>USER: hi") == cat({{1}, tok.encode_plain("hello"), {2}, tok.encode_plain("USER: hi")}));
    // AddedTokens without lstrip/rstrip keep the spaces around them.
    CHECK(tok.encode("a <unk> b") == cat({{1}, tok.encode_plain("a "), {0}, tok.encode_plain(" b")}));
    // A special token given as a plain string in special_tokens_map.json strips both sides.
    TokenizerConfig plain = TokenizerConfig::read(kDir);
    plain.eos.added_token = false;
    Tokenizer stripping(kDir + "/tokenizer.model", plain);
    CHECK(stripping.encode("a </s> b") == cat({{1}, tok.encode_plain("a"), {2}, tok.encode_plain("b")}));
    // add_eos_token appends EOS.
    TokenizerConfig eos = TokenizerConfig::read(kDir);
    eos.add_eos_token = true;
    CHECK(Tokenizer(kDir + "/tokenizer.model", eos).encode("x") == cat({{1}, tok.encode_plain("x"), {2}}));
}

TEST_CASE("prompts with images follow tokenizer_image_token", "[tokenizer]") {
    Tokenizer legacy(kDir);
    Tokenizer modern(kDir + "/tokenizer.model", non_legacy());
    for (const auto& c : expected()["prompt_ids"]) {
        const std::string prompt = c["prompt"].get<std::string>();
        INFO("prompt: \"" << prompt << "\"");
        CHECK(legacy.encode_prompt(prompt) == ids(c["legacy"]));
        CHECK(modern.encode_prompt(prompt) == ids(c["non_legacy"]));
    }
    const std::int64_t img = kImageTokenIndex;
    // One BOS, then each chunk with its own dummy prefix, -200 between chunks.
    CHECK(legacy.encode_prompt("USER: <|image|>Describe the image. ASSISTANT:") ==
          cat({{1}, legacy.encode_plain("USER: "), {img}, legacy.encode_plain("Describe the image. ASSISTANT:")}));
    // A leading marker: the first chunk is empty, so no BOS is kept up front and
    // the next chunk keeps its own BOS after the image.
    CHECK(legacy.encode_prompt("<|image|>Describe") == cat({{img, 1}, legacy.encode_plain("Describe")}));
    CHECK(legacy.encode_prompt("<|image|>") == std::vector<std::int64_t>{img});
    CHECK(legacy.encode_prompt("x<|image|><|image|>") == cat({{1}, legacy.encode_plain("x"), {img, img}}));
    CHECK(legacy.encode_prompt("") == std::vector<std::int64_t>{});
    CHECK(legacy.encode_prompt("no image") == legacy.encode("no image"));
}

TEST_CASE("decode skips special tokens as the CLI prints and keeps them as it stores", "[tokenizer]") {
    Tokenizer tok(kDir);
    for (const auto& c : expected()["decode"]) {
        const auto v = ids(c["ids"]);
        INFO("ids of " << c["skip_special"].get<std::string>());
        CHECK(tok.decode(v) == c["skip_special"].get<std::string>());
        CHECK(tok.decode(v, /*skip_special_tokens=*/false) == c["keep_special"].get<std::string>());
    }
    CHECK(tok.decode(tok.encode("line one\nline two")) == "line one\nline two");
    CHECK(tok.decode(cat({tok.encode_plain("a cat"), {2}}), false) == " a cat</s>");
    CHECK_THROWS_WITH(tok.decode({1, kImageTokenIndex}), Catch::Contains("token id -200 is outside the vocabulary"));
    CHECK_THROWS_WITH(tok.decode({320}), Catch::Contains("token id 320"));
    TokenizerConfig c = TokenizerConfig::read(kDir);
    c.clean_up_tokenization_spaces = true;
    CHECK(Tokenizer(kDir + "/tokenizer.model", c).decode(tok.encode_plain("yes , it is .")) == "yes, it is.");
}

TEST_CASE("token ids are std::int64_t from the tokenizer to the model and back", "[tokenizer]") {
    const Tokenizer tok(kDir);
    using Ids = std::vector<std::int64_t>;
    static_assert(std::is_same<decltype(tok.encode_prompt("")), Ids>::value, "encode_prompt gives the model's ids");
    static_assert(std::is_same<decltype(tok.encode("")), Ids>::value, "encode gives the model's ids");
    static_assert(std::is_same<decltype(tok.bos_id()), std::int64_t>::value, "bos_id is a model id");
    static_assert(std::is_same<decltype(Generation<float>::ids), Ids>::value, "generate gives the tokenizer's ids");
    // the prompt goes to the model's prompt check as it is, and generated ids to decode
    const Ids prompt = tok.encode_prompt("USER: <|image|>hi ASSISTANT:");
    CHECK(prompt.front() == tok.bos_id());
    CHECK(std::count(prompt.begin(), prompt.end(), kImageTokenIndex) == 1);
    CHECK_NOTHROW(check_prompt(prompt, 1, std::size_t(tok.vocab_size())));
    const Ids text(std::find(prompt.begin(), prompt.end(), kImageTokenIndex) + 1, prompt.end());
    CHECK(tok.decode(text) == "hi ASSISTANT:");
}

TEST_CASE("tokenizer files that cannot work are refused", "[tokenizer][errors]") {
    CHECK_THROWS_WITH(Tokenizer(std::string(MPLUG_OWL2_FIXTURE_DIR) + "/torch"), Catch::Contains("cannot load the sentencepiece model"));
    TokenizerConfig c;
    c.additional.push_back({"<|image|>"});
    CHECK_THROWS_WITH(Tokenizer(kDir + "/tokenizer.model", c),
                      Catch::Contains("special token <|image|> is not a piece of the model"));
}

TEST_CASE("the mplug_owl2 template builds the official prompts", "[conversation]") {
    Conversation conv;
    conv.add_user_turn("Describe the image.", /*images=*/1);
    CHECK(conv.prompt() == "USER: <|image|>Describe the image. ASSISTANT:");
    conv.set_reply("A cat.</s>");
    conv.add_user_turn("What colour is it?");
    CHECK(conv.prompt() == "USER: <|image|>Describe the image. ASSISTANT: A cat.</s></s>USER: What colour is it? ASSISTANT:");
    CHECK(Conversation::stop_string() == "</s>");

    Conversation two;
    two.add_user_turn("Compare them.", 2);
    CHECK(two.prompt() == "USER: <|image|><|image|>Compare them. ASSISTANT:");
    Conversation text;
    text.append(Conversation::kUser, std::string("hi"));
    text.append(Conversation::kAssistant, std::string("hello"));
    text.append(Conversation::kUser, std::string(""));  // an empty message is an open turn
    CHECK(text.prompt() == "USER: hi ASSISTANT: hello</s>USER:");
    CHECK_THROWS_WITH(text.set_reply("x"), Catch::Contains("no open assistant turn"));

    // The template's prompt through the tokenizer: the fixture's first prompt.
    Tokenizer tok(kDir);
    Conversation first;
    first.add_user_turn("Describe the image.", 1);
    CHECK(first.prompt() == expected()["prompt_ids"][0]["prompt"].get<std::string>());
    CHECK(tok.encode_prompt(first.prompt()) == ids(expected()["prompt_ids"][0]["legacy"]));
}
