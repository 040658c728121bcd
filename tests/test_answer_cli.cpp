// `mplug-owl2 answer` and `mplug-owl2 chat` end to end on the tiny reference
// model with the test tokenizer (tests/fixtures/tokenizer, 320 pieces = the
// tiny vocabulary), copied together into a checkpoint folder:
//   - the prompt ids are the official tokenisation of the release's template
//     (expected.json, computed with sentencepiece in Python);
//   - the generated ids are those the library computes for the same prompt
//     and image (greedy, or sampled with the same settings), and the printed
//     answer is the tokenizer's decoding of them with special tokens skipped;
//   - chat: the second turn's prompt is the first turn's prompt, the reply
//     decoded with special tokens kept and stripped, "</s>", then the second
//     question, in the template's words; each turn's ids are the library's;
//   - errors: no tokenizer, bad options.
#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli_run.hpp"
#include "mplug_owl2/io/image.hpp"
#include "mplug_owl2/io/tokenizer.hpp"
#include "mplug_owl2/model/image_processor.hpp"
#include "mplug_owl2/model/load_model.hpp"
#include "parity.hpp"

using namespace mplug_owl2;
namespace fs = std::filesystem;

namespace {

const std::string kTmp = MPLUG_OWL2_TEST_TMP;
const std::string kTiny = parity::tiny_dir();
const std::string kTokenizer = std::string(MPLUG_OWL2_FIXTURE_DIR) + "/tokenizer";
const std::string kImage = kTiny + "/coffee.jpg";

// The tiny model with the test tokenizer, as a checkpoint folder (`with_tokenizer` false: without it).
std::string model_dir(const std::string& name, bool with_tokenizer = true) {
    const fs::path dir = fs::path(kTmp) / name;
    fs::remove_all(dir);
    fs::create_directories(dir);
    for (const char* f : {"config.json", "model.safetensors"}) fs::copy_file(fs::path(kTiny) / f, dir / f);
    if (with_tokenizer)
        for (const char* f : {"tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"})
            fs::copy_file(fs::path(kTokenizer) / f, dir / f);
    return dir.string();
}

using cli_run::read_file;
using cli_run::Run;

Run run(const std::string& args, const std::string& tag, const std::string& input = "") {
    return cli_run::run(args, "answer_cli_" + tag, input);
}

// The ids after "<key>: " on each line of `text` that has it, in order.
std::vector<std::vector<std::int64_t>> id_lines(const std::string& text, const std::string& key) {
    std::vector<std::vector<std::int64_t>> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(key + ": ", 0) != 0) continue;
        std::vector<std::int64_t> ids;
        std::istringstream items(line.substr(key.size() + 2));
        std::string item;
        while (std::getline(items, item, ',')) ids.push_back(std::stoll(item));
        out.push_back(ids);
    }
    return out;
}

const MplugOwl2LlamaForCausalLM<float>& tiny_model() {
    static const auto m = load_model<float>(kTiny);
    return m;
}

// The image as the model's input, through the library (the official
// preprocessing with pad, CLIP's settings at the tiny image_size).
xt::xtensor<float, 4> image_pixels() {
    ImageProcessorConfig pre;
    pre.size = pre.crop_size = 56;
    const ProcessedImage img = process_image(load_image(kImage), "pad", pre);
    xt::xtensor<float, 4> p = xt::xtensor<float, 4>::from_shape({1, 3, 56, 56});
    std::copy(img.pixel_values.begin(), img.pixel_values.end(), p.begin());
    return p;
}

// What the library generates for a prompt with the image.
std::vector<std::int64_t> library_ids(const std::vector<std::int64_t>& prompt, std::size_t max_new_tokens,
                                      const SamplingConfig& sampling = {}) {
    GenerationConfig g;
    g.max_new_tokens = max_new_tokens;
    g.sampling = sampling;
    return tiny_model().generate(prompt, image_pixels(), g, Hooks<float>()).ids;
}

// No piece of the test tokenizer decodes to text holding "</s>", so the
// program's stop string cannot end a turn early here: the library's ids,
// which know nothing of it, are comparable.
void require_no_stop_string_piece(const Tokenizer& tok) {
    for (std::int64_t id = 0; id < tok.vocab_size(); ++id)
        REQUIRE(tok.decode({id}, true).find("</s>") == std::string::npos);
}

std::string strip(const std::string& s) {
    const auto b = s.find_first_not_of(" \t\n\r\f\v");
    return b == std::string::npos ? "" : s.substr(b, s.find_last_not_of(" \t\n\r\f\v") - b + 1);
}

const nlohmann::json& expected_tokens() {
    static const nlohmann::json j = [] {
        std::ifstream in(kTokenizer + "/expected.json");
        return nlohmann::json::parse(in);
    }();
    return j;
}

}  // namespace

TEST_CASE("answer prints the library's greedy answer to the template's prompt", "[cli][answer]") {
    const std::string dir = model_dir("answer_model");
    const Tokenizer tok(dir);
    require_no_stop_string_piece(tok);
    const Run r = run("answer --model '" + dir + "' --image '" + kImage +
                          "' --prompt 'Describe the image.' --max-new-tokens 12 --ids --print-prompt-ids",
                      "greedy");
    INFO(r.err);
    REQUIRE(r.code == 0);

    // The prompt: "USER: <|image|>Describe the image. ASSISTANT:" tokenised as the official code does.
    const auto prompts = id_lines(r.err, "prompt ids");
    REQUIRE(prompts.size() == 1);
    const auto& want_prompt = expected_tokens()["prompt_ids"][0];
    REQUIRE(want_prompt["prompt"] == "USER: <|image|>Describe the image. ASSISTANT:");
    CHECK(prompts[0] == want_prompt["legacy"].get<std::vector<std::int64_t>>());

    // The answer: the library's greedy ids, printed as their decoding.
    const auto ids = id_lines(r.err, "ids");
    REQUIRE(ids.size() == 1);
    const auto want = library_ids(prompts[0], 12);
    CHECK(ids[0] == want);
    CHECK(r.out == tok.decode(want, true) + "\n");
}

TEST_CASE("answer samples as the library samples with the same settings", "[cli][answer]") {
    const std::string dir = model_dir("answer_model_sampling");
    const Tokenizer tok(dir);
    require_no_stop_string_piece(tok);
    const Run r = run("answer --model '" + dir + "' --image '" + kImage +
                          "' --prompt 'What is this?' --max-new-tokens 10 --temperature 0.7 --top-k 40 --top-p 0.9 "
                          "--seed 11 --ids --print-prompt-ids",
                      "sampled");
    INFO(r.err);
    REQUIRE(r.code == 0);
    const auto prompt = id_lines(r.err, "prompt ids");
    REQUIRE(prompt.size() == 1);
    CHECK(prompt[0] == tok.encode_prompt("USER: <|image|>What is this? ASSISTANT:"));
    SamplingConfig s;
    s.do_sample = true;
    s.temperature = 0.7;
    s.top_k = 40;
    s.top_p = 0.9;
    s.seed = 11;
    const auto want = library_ids(prompt[0], 10, s);
    const auto ids = id_lines(r.err, "ids");
    REQUIRE(ids.size() == 1);
    CHECK(ids[0] == want);
    CHECK(want != library_ids(prompt[0], 10));  // sampling chose otherwise than greedy here
    CHECK(r.out == tok.decode(want, true) + "\n");
}

TEST_CASE("answer takes the prompt as ids and prints ids without a tokenizer", "[cli][answer]") {
    const std::string dir = model_dir("answer_model_no_tokenizer", false);
    const std::vector<std::int64_t> prompt = {1, 5, -200, 17, 42, 99, 7};
    const Run r = run("answer --model '" + dir + "' --image '" + kImage + "' --prompt-ids=1,5,-200,17,42,99,7 " +
                          "--max-new-tokens 5 --dtype double --timings",
                      "ids_only");
    INFO(r.err);
    REQUIRE(r.code == 0);
    // --timings: each stage, then the memory line, which the kernel's figures complete
    CHECK_THAT(r.err, Catch::Contains("timings: model loaded in "));
    CHECK_THAT(r.err, Catch::Contains("timings: prompt of 7 ids"));
    CHECK_THAT(r.err, Catch::Contains("timings: peak resident memory "));
    CHECK_THAT(r.err, Catch::Contains(" GB in 2 MB pages") || Catch::Contains("not reported by this kernel"));
    CHECK_THAT(r.err, !Catch::Contains("memory -1 GB"));
    GenerationConfig g;
    g.max_new_tokens = 5;
    const auto model = load_model<double>(kTiny);
    const auto px = image_pixels();
    const xt::xtensor<double, 4> pixels = xt::cast<double>(px);
    const auto want = model.generate(prompt, pixels, g, Hooks<double>()).ids;
    const auto printed = id_lines("ids: " + r.out, "ids");
    REQUIRE(printed.size() == 1);
    CHECK(printed[0] == want);
}

TEST_CASE("chat keeps the history as the official CLI does", "[cli][chat]") {
    const std::string dir = model_dir("chat_model");
    const Tokenizer tok(dir);
    require_no_stop_string_piece(tok);
    const std::string q1 = "Describe the image.", q2 = "What color is it?";
    const Run r = run("chat --model '" + dir + "' --image '" + kImage +
                          "' --temperature 0 --max-new-tokens 7 --ids --print-prompt-ids",
                      "chat", q1 + "\n" + q2 + "\n");
    INFO(r.err);
    REQUIRE(r.code == 0);
    const auto prompts = id_lines(r.err, "prompt ids");
    const auto ids = id_lines(r.err, "ids");
    REQUIRE(prompts.size() == 2);
    REQUIRE(ids.size() == 2);

    // Turn 1: the template's prompt with the image, the library's answer.
    CHECK(prompts[0] == expected_tokens()["prompt_ids"][0]["legacy"].get<std::vector<std::int64_t>>());
    CHECK(ids[0] == library_ids(prompts[0], 7));

    // Turn 2: the history in the template's words, the reply as the CLI stores it.
    const std::string reply = strip(tok.decode(ids[0], false));
    const std::string history = "USER: <|image|>" + q1 + " ASSISTANT: " + reply + "</s>USER: " + q2 + " ASSISTANT:";
    CHECK(prompts[1] == tok.encode_prompt(history));
    CHECK(ids[1] == library_ids(prompts[1], 7));

    // What the user sees: each answer decoded with special tokens skipped.
    CHECK(r.out == "USER: ASSISTANT: " + tok.decode(ids[0], true) + "\nUSER: ASSISTANT: " +
                       tok.decode(ids[1], true) + "\nUSER: exit...\n");
}

TEST_CASE("chat ends at an empty line or the end of the input", "[cli][chat]") {
    const std::string dir = model_dir("chat_model_end");
    const Run empty = run("chat --model '" + dir + "' --image '" + kImage + "'", "chat_empty", "\nignored\n");
    INFO(empty.err);
    CHECK(empty.code == 0);
    CHECK(empty.out == "USER: exit...\n");
    const Run eof = run("chat --model '" + dir + "' --image '" + kImage + "' --max-new-tokens 2 --ids", "chat_eof",
                        "Hi");
    INFO(eof.err);
    CHECK(eof.code == 0);
    CHECK(id_lines(eof.err, "ids").size() == 1);
    CHECK(eof.out.rfind("USER: ASSISTANT: ", 0) == 0);
    CHECK(eof.out.size() >= 15);
    CHECK(eof.out.compare(eof.out.size() - 15, 15, "\nUSER: exit...\n") == 0);
}

TEST_CASE("answer and chat refuse what they cannot do with one error line", "[cli][answer][chat][errors]") {
    const std::string dir = model_dir("answer_model_errors");
    const std::string bare = model_dir("answer_model_errors_bare", false);
    struct Bad {
        std::string args;
        int code;
        std::string message;
    };
    const std::string image = " --image '" + kImage + "'";
    const std::vector<Bad> bad = {
        {"answer --model '" + bare + "'" + image + " --prompt hi", 2, "tokenizer.model: not found"},
        {"chat --model '" + bare + "'" + image, 2, "tokenizer.model: not found"},
        {"answer --model '" + dir + "'" + image + " --prompt hi --top-k 5", 2, "give --temperature above 0"},
        {"answer --model '" + dir + "'" + image + " --prompt hi --temperature -1", 2, "--temperature -1"},
        {"answer --model '" + dir + "'" + image + " --prompt hi --dtype double --weights half", 2,
         "--weights half"},
        {"answer --model '" + dir + "' --prompt-ids=1,-200,5", 2, "1 image marker (-200) for 0 images"},
        {"answer --model '" + dir + "'" + image + " --prompt-ids=1,5", 2, "0 image markers (-200) for 1 image"},
        {"answer --model '" + dir + "'" + image + " --prompt hi --mam swap --mam-layers 7", 2,
         "--mam-layers: layer 7 does not exist"},
        {"answer --model '" + dir + "'" + image, 1, "--prompt or --prompt-ids"},
        {"answer --model '" + dir + "'" + image + " --prompt hi --prompt-ids=1", 1, "excludes"},
        {"answer --model '" + dir + "'" + image + " --prompt hi --weights quarter", 1, "quarter"},
        {"chat --model '" + dir + "'" + image + " --max-new-tokens lots", 1, "lots"},
    };
    for (std::size_t i = 0; i < bad.size(); ++i) {
        const Run r = run(bad[i].args, "bad" + std::to_string(i));
        INFO("arguments: " << bad[i].args << "\nstderr: " << r.err);
        CHECK(r.code == bad[i].code);
        CHECK(r.err.rfind("error: ", 0) == 0);
        CHECK(r.err.find(bad[i].message) != std::string::npos);
        if (bad[i].code == 2) CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    }
}
