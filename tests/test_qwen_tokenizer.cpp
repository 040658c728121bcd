// Qwen's tokenizer on a small vocabulary. tests/fixtures/qwen_tokenizer holds
// qwen.tiktoken (256 bytes and 200 learnt merges) and expected.json, whose ids
// and texts make_qwen_tokenizer.py computed with tests/qwen_reference.py, a
// plain-Python Qwen tokenizer (split pattern, BPE, NFC, special tokens,
// tokenizer_image_token, decoding with errors="replace").
#include <catch2/catch.hpp>

#include <fstream>

#include <nlohmann/json.hpp>

#include "mplug_owl2/io/qwen_tokenizer.hpp"

using namespace mplug_owl2;

namespace {

const std::string kDir = std::string(MPLUG_OWL2_FIXTURE_DIR) + "/qwen_tokenizer";
const std::string kTmp = MPLUG_OWL2_TEST_TMP;
using Ids = std::vector<std::int64_t>;

const nlohmann::json& expected() {
    static const nlohmann::json j = [] {
        std::ifstream in(kDir + "/expected.json");
        return nlohmann::json::parse(in);
    }();
    return j;
}

Ids ids(const nlohmann::json& j) { return j.get<Ids>(); }

// A .tiktoken file with `text` in the test folder; returns its path.
std::string vocab_file(const std::string& name, const std::string& text) {
    const std::string path = kTmp + "/" + name + ".tiktoken";
    std::ofstream(path, std::ios::binary) << text;
    return path;
}

}  // namespace

TEST_CASE("qwen.tiktoken loads with Qwen's special ids", "[qwen_tokenizer]") {
    QwenTokenizer tok(kDir);  // the folder finds qwen.tiktoken
    CHECK(tok.file() == kDir + "/qwen.tiktoken");
    CHECK(tok.vocab_size() == 151851);
    CHECK(tok.eos_id() == 151643);
    CHECK(tok.im_start_id() == 151644);
    CHECK(tok.im_end_id() == 151645);
    CHECK(tok.piece(151643) == "<|endoftext|>");
    CHECK(tok.piece(151646) == "<|extra_0|>");
    CHECK(tok.piece(151850) == "<|extra_204|>");
    CHECK(tok.is_special(151643));
    CHECK(tok.is_special(151850));
    CHECK_FALSE(tok.is_special(151851));
    CHECK_FALSE(tok.is_special(455));
    CHECK(tok.piece(65) == "A");
    CHECK(tok.piece(0xe6) == std::string(1, '\xe6'));
    CHECK(tok.piece(455) == "with");  // the last line: d2l0aA== 455
    CHECK_THROWS_WITH(tok.piece(456), Catch::Contains("token id 456 is not in the vocabulary of " + kDir + "/qwen.tiktoken"));
    CHECK_THROWS_WITH(tok.piece(-200), Catch::Contains("token id -200"));
    CHECK_THROWS_WITH(tok.piece(151851), Catch::Contains("token id 151851"));
}

TEST_CASE("encode equals the Python reference of QWenTokenizer", "[qwen_tokenizer]") {
    QwenTokenizer tok(kDir + "/qwen.tiktoken");
    for (const auto& c : expected()["encode"]) {
        const std::string text = c["text"].get<std::string>();
        INFO("text: \"" << text << "\"");
        CHECK(tok.encode(text) == ids(c["ids"]));
        CHECK(tok.encode_plain(text) == ids(c["plain"]));
    }
}

TEST_CASE("special tokens are their ids wherever they stand and no BOS is added", "[qwen_tokenizer]") {
    QwenTokenizer tok(kDir);
    CHECK(tok.encode("<|endoftext|>") == Ids{151643});
    CHECK(tok.encode("<|im_start|><|im_end|><|extra_204|>") == Ids{151644, 151645, 151850});
    // Text on each side is encoded on its own: "x" then the token then "x".
    CHECK(tok.encode("x<|im_end|>x") == Ids{120, 151645, 120});
    // Not special: an unknown extra, an unclosed token; encode_plain never is.
    CHECK(tok.encode("<|extra_205|>") == tok.encode_plain("<|extra_205|>"));
    CHECK(tok.encode("<|im_end") == tok.encode_plain("<|im_end"));
    CHECK(tok.encode_plain("<|im_end|>").size() > 1);
    CHECK(tok.encode("") == Ids{});
}

TEST_CASE("NFC comes before splitting and encoding", "[qwen_tokenizer]") {
    QwenTokenizer tok(kDir);
    // e + combining acute is é (U+00E9); Hangul jamo compose to one syllable.
    CHECK(tok.encode("e\xcc\x81") == tok.encode("\xc3\xa9"));
    CHECK(tok.encode("\xe1\x84\x80\xe1\x85\xa1") == tok.encode("\xea\xb0\x80"));
    CHECK(tok.encode_plain("e\xcc\x81") == tok.encode_plain("\xc3\xa9"));
}

TEST_CASE("prompts with images follow tokenizer_image_token without BOS", "[qwen_tokenizer]") {
    QwenTokenizer tok(kDir);
    for (const auto& c : expected()["encode_prompt"]) {
        const std::string prompt = c["prompt"].get<std::string>();
        INFO("prompt: \"" << prompt << "\"");
        CHECK(tok.encode_prompt(prompt) == ids(c["ids"]));
    }
    const std::int64_t img = kImageTokenIndex;
    Ids want = tok.encode("USER: ");
    want.push_back(img);
    const Ids rest = tok.encode("describe");
    want.insert(want.end(), rest.begin(), rest.end());
    CHECK(tok.encode_prompt("USER: <|image|>describe") == want);
    CHECK(tok.encode_prompt("<|image|><|image|>") == Ids{img, img});
    CHECK(tok.encode_prompt("no image") == tok.encode("no image"));
}

TEST_CASE("decode joins bytes and replaces invalid UTF-8 as Python does", "[qwen_tokenizer]") {
    QwenTokenizer tok(kDir);
    for (const auto& c : expected()["decode"]) {
        const Ids v = ids(c["ids"]);
        INFO("ids: " << c["ids"].dump());
        CHECK(tok.decode(v, /*skip_special_tokens=*/false) == c["keep_special"].get<std::string>());
        CHECK(tok.decode(v) == c["skip_special"].get<std::string>());
    }
    // Qwen's own example: b' \xe6\xa0' alone is ' ' and one U+FFFD; with \xb9 it is ' 根'.
    CHECK(tok.decode({32, 0xe6, 0xa0}) == " \xef\xbf\xbd");
    CHECK(tok.decode({32, 0xe6, 0xa0, 0xb9}) == " \xe6\xa0\xb9");
    const std::string text = "What is in this picture? 杭州是个好地方。\n\tdef f(x):";
    CHECK(tok.decode(tok.encode(text)) == text);
    CHECK(tok.decode(tok.encode("<|im_start|>user\nhi<|im_end|>"), false) == "<|im_start|>user\nhi<|im_end|>");
    CHECK(tok.decode(tok.encode("<|im_start|>user\nhi<|im_end|>")) == "user\nhi");
    CHECK_THROWS_WITH(tok.decode({65, kImageTokenIndex}), Catch::Contains("token id -200 is not in the vocabulary"));
    CHECK_THROWS_WITH(tok.decode({456}, false), Catch::Contains("token id 456"));
    // Skipping drops every id from 151643 on, known or not, as QWenTokenizer._decode does.
    CHECK(tok.decode({65, 151851, 999999}) == "A");
    CHECK_THROWS_WITH(tok.decode({65, 151851}, false), Catch::Contains("token id 151851"));
}

TEST_CASE("text that is not UTF-8 is refused", "[qwen_tokenizer][errors]") {
    QwenTokenizer tok(kDir);
    CHECK_THROWS_WITH(tok.encode("ab\xff"), Catch::Contains("not valid UTF-8"));
    CHECK_THROWS_WITH(tok.encode_prompt("<|image|>\xed\xa0\x80"), Catch::Contains("not valid UTF-8"));  // a surrogate
}

TEST_CASE("a vocabulary without some single bytes encodes what it can and names the byte it lacks", "[qwen_tokenizer][errors]") {
    // "a" "b" and "ab": no single-byte fallback for anything else.
    QwenTokenizer tok(vocab_file("ab", "YQ== 0\nYg== 1\nYWI= 2\n"));
    CHECK(tok.encode("ab") == Ids{2});
    CHECK(tok.encode("aba") == Ids{2, 0});
    CHECK(tok.encode("ab<|endoftext|>") == Ids{2, 151643});
    CHECK_THROWS_WITH(tok.encode("abc"), Catch::Contains("ab.tiktoken: has no token for byte 0x63"));
}

TEST_CASE("the vocabulary file is read as Python's _load_tiktoken_bpe reads it", "[qwen_tokenizer]") {
    // Empty lines are skipped, \r\n, \r and \n end lines, fields are split at
    // runs of spaces or tabs, a gap in the ranks is allowed.
    QwenTokenizer tok(vocab_file("layout", "\n\nYQ== 0\r\n  Yg==\t 1 \rYWI= 5\n\n"));
    CHECK(tok.encode("ab") == Ids{5});
    CHECK(tok.piece(1) == "b");
    CHECK_THROWS_WITH(tok.piece(3), Catch::Contains("token id 3 is not in the vocabulary"));
}

TEST_CASE("bad vocabulary files are refused with their file and line", "[qwen_tokenizer][errors]") {
    const auto refused = [](const std::string& name, const std::string& text, const std::string& message) {
        const std::string path = vocab_file(name, text);
        INFO(name);
        CHECK_THROWS_WITH(QwenTokenizer(path), Catch::Contains(message));
    };
    refused("fields", "YQ== 0\nYg== 1 2\n", "fields.tiktoken:2: expected a base64 token and its rank, found 3 fields");
    refused("one_field", "YQ==\n", "one_field.tiktoken:1: expected a base64 token and its rank, found 1 fields");
    refused("base64", "YQ== 0\nY!== 1\n", "base64.tiktoken:2: the token \"Y!==\" is not base64");
    refused("base64_length", "YQ= 0\n", "base64_length.tiktoken:1: the token \"YQ=\" is not base64");
    refused("base64_pad", "Y=Q= 0\n", "base64_pad.tiktoken:1: the token \"Y=Q=\" is not base64");
    refused("base64_padding_only", "==== 0\n", "base64_padding_only.tiktoken:1: the token \"====\" is not base64");
    refused("rank_text", "YQ== zero\n", "rank_text.tiktoken:1: the rank \"zero\" is not a whole number");
    refused("rank_sign", "YQ== -1\n", "rank_sign.tiktoken:1: the rank \"-1\" is not a whole number");
    refused("rank_huge", "YQ== 99999999999999999999\n", "rank_huge.tiktoken:1: rank 99999999999999999999 is not below 151643");
    refused("rank_special", "YQ== 151643\n", "rank_special.tiktoken:1: rank 151643 is not below 151643, the first special token's id");
    refused("rank_twice", "YQ== 0\nYg== 1\nYw== 0\n", "rank_twice.tiktoken:3: rank 0 is also the rank of line 1");
    refused("token_twice", "YQ== 0\n\nYQ== 1\n", "token_twice.tiktoken:3: the token is also line 1's");
    refused("empty", "\n\n", "empty.tiktoken: holds no tokens");
    refused("binary", std::string("\x00\x01\xff\xfe", 4), "binary.tiktoken:1: expected a base64 token and its rank, found 1 fields");
    CHECK_THROWS_WITH(QwenTokenizer(kTmp + "/missing.tiktoken"), Catch::Contains("missing.tiktoken: cannot open the Qwen vocabulary"));
    CHECK_THROWS_WITH(QwenTokenizer(kTmp), Catch::Contains(kTmp + "/qwen.tiktoken: cannot open"));
}

TEST_CASE("a vocabulary file larger than any real one is refused before it is read whole", "[qwen_tokenizer][errors]") {
    // /dev/zero never ends: reading stops at the size limit.
    CHECK_THROWS_WITH(QwenTokenizer("/dev/zero"), Catch::Contains("/dev/zero: larger than 64 MiB"));
}
