// Prompts, ids and generation settings the library must refuse, each with an
// mplug_owl2::Error naming what is wrong and what was expected, and the
// budgets it must bound without allocating for them:
//   - image markers (-200) against the images given, ids outside the
//     vocabulary, negative ids other than -200, empty prompts, a marker alone;
//   - prompts longer than the positions the config allows and token budgets
//     that do not fit after them (limits from max_position_embeddings and
//     rope_scaling as config.json states them);
//   - sampling settings out of range;
//   - the tokenizer: ids outside its pieces, missing or broken files.
// The expected limits are the config's numbers, not figures of this code.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "mplug_owl2/io/tokenizer.hpp"
#include "mplug_owl2/model/load_model.hpp"
#include "parity.hpp"

using namespace mplug_owl2;
namespace fs = std::filesystem;

namespace {

const std::string kTiny = parity::tiny_dir();
const std::string kTokenizer = std::string(MPLUG_OWL2_FIXTURE_DIR) + "/tokenizer";
const std::string kTmp = MPLUG_OWL2_TEST_TMP;

// The tiny model (vocab 320, max_position_embeddings 2048, Q = 8) with its config changed by `edit`.
template <class Edit>
MplugOwl2LlamaForCausalLM<float> tiny_with(Edit edit) {
    ModelConfig c = load_config(kTiny + "/config.json");
    edit(c);
    return load_model<float>(std::shared_ptr<const TensorSource>(open_checkpoint(kTiny)), c);
}

const MplugOwl2LlamaForCausalLM<float>& tiny() {
    static const auto m = tiny_with([](ModelConfig&) {});
    return m;
}

xt::xtensor<float, 4> no_pixels() { return xt::xtensor<float, 4>::from_shape({0, 3, 56, 56}); }

// The message of the Error `f` throws ("" if it throws none).
template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("check_prompt refuses ids that do not fit the images and the vocabulary", "[prompt][errors]") {
    struct Bad {
        std::vector<std::int64_t> ids;
        std::size_t images;
        std::string message;
    };
    const std::int64_t lowest = std::numeric_limits<std::int64_t>::min();
    const std::vector<Bad> bad = {
        {{}, 0, "input ids: the prompt is empty"},
        {{1, -200, 5}, 0, "1 image marker (-200) for 0 images"},
        {{1, -200, 5, -200}, 1, "2 image markers (-200) for 1 image"},
        {{1, 5}, 2, "0 image markers (-200) for 2 images"},
        {{1, 320}, 0, "id 320 at position 1 is outside the vocabulary [0, 320)"},
        {{1, std::numeric_limits<std::int64_t>::max()}, 0, "is outside the vocabulary [0, 320)"},
        {{1, -1}, 0, "id -1 at position 1 is negative; the only negative id is -200"},
        {{1, -201}, 0, "id -201 at position 1 is negative"},
        {{lowest}, 0, "id " + std::to_string(lowest) + " at position 0 is negative"},
        {{-200}, 1, "a prompt of the image marker alone is not accepted"},
    };
    for (const auto& b : bad) {
        INFO("expected: " << b.message);
        CHECK(error_of([&] { check_prompt(b.ids, b.images, 320); }).find(b.message) != std::string::npos);
    }
    // the edges that are fine
    CHECK(error_of([] { check_prompt({319}, 0, 320); }).empty());
    CHECK(error_of([] { check_prompt({0, -200, -200, 2}, 2, 320); }).empty());
    CHECK(error_of([] { check_prompt({-200, 1}, 1, 320); }).empty());
}

TEST_CASE("prepare_inputs refuses image features that do not match the markers or the width", "[prompt][errors]") {
    const Hooks<float> none;
    const Matrix<float> feature = Matrix<float>::from_shape({9, 64});  // Q + 1 = 9 rows, D = 64
    CHECK(error_of([&] { tiny().prepare_inputs({1, -200, 5}, {}, none); }).find("1 image marker (-200) for 0 images") !=
          std::string::npos);
    CHECK(error_of([&] { tiny().prepare_inputs({1, 5}, {feature}, none); }).find("0 image markers (-200) for 1 image") !=
          std::string::npos);
    const Matrix<float> narrow = Matrix<float>::from_shape({9, 63});
    CHECK(error_of([&] { tiny().prepare_inputs({1, -200}, {narrow}, none); }).find("image 0 features") !=
          std::string::npos);
    // a decoding step's id is checked by the embedding table, which names itself
    KVCache<float> cache = tiny().new_cache();
    CHECK(error_of([&] { tiny().decode_step(320, cache, none); }).find("model.embed_tokens: token id 320") !=
          std::string::npos);
    CHECK(error_of([&] { tiny().decode_step(-200, cache, none); }).find("model.embed_tokens: token id -200") !=
          std::string::npos);
    CHECK(cache.length == 0);
}

TEST_CASE("prompt positions and budgets are held to max_position_embeddings", "[prompt][errors]") {
    const ModelConfig c = load_config(kTiny + "/config.json");  // max_position_embeddings 2048, 8 queries
    // text ids count one position each, each marker Q + 1
    CHECK(prompt_positions({1, 5, 7}, c) == 3);
    CHECK(prompt_positions({1, -200, 5, -200}, c) == 2 + 2 * (8 + 1));

    CHECK(error_of([&] { check_context(2048, 0, c.text, "--max-new-tokens"); }).empty());
    CHECK(error_of([&] { check_context(2000, 48, c.text, "--max-new-tokens"); }).empty());
    const std::string over = error_of([&] { check_context(2000, 49, c.text, "--max-new-tokens"); });
    CHECK(over.find("--max-new-tokens 49") != std::string::npos);
    CHECK(over.find("max_position_embeddings 2048") != std::string::npos);
    CHECK(over.find("at most 48 new tokens fit") != std::string::npos);
    const std::string huge =
        error_of([&] { check_context(10, std::numeric_limits<std::size_t>::max(), c.text, "--generate"); });
    CHECK(huge.find("--generate " + std::to_string(std::numeric_limits<std::size_t>::max())) != std::string::npos);
    const std::string long_prompt = error_of([&] { check_context(2049, 0, c.text, "--max-new-tokens"); });
    CHECK(long_prompt.find("the prompt takes 2049 positions") != std::string::npos);
    CHECK(long_prompt.find("max_position_embeddings 2048") != std::string::npos);

    // linear rope_scaling stretches the limit by its factor; dynamic has none
    TextConfig linear = c.text;
    linear.rope_scaling = RopeScaling{"linear", 2.0};
    CHECK(error_of([&] { check_context(4000, 96, linear, "--max-new-tokens"); }).empty());
    CHECK(error_of([&] { check_context(4000, 97, linear, "--max-new-tokens"); }).find("with linear rope_scaling") !=
          std::string::npos);
    TextConfig dynamic = c.text;
    dynamic.rope_scaling = RopeScaling{"dynamic", 2.0};
    CHECK(error_of([&] { check_context(100000, 1000000, dynamic, "--max-new-tokens"); }).empty());
}

TEST_CASE("the model refuses a prompt longer than the context", "[prompt][errors]") {
    const std::vector<std::int64_t> ids(2049, 5);
    const Hooks<float> none;
    KVCache<float> cache = tiny().new_cache();
    const PreparedInputs<float> in = tiny().prepare_inputs(ids, {}, none);
    const std::string e = error_of([&] { tiny().forward(in, cache, none); });
    CHECK(e.find("2049 positions") != std::string::npos);
    CHECK(e.find("max_position_embeddings 2048") != std::string::npos);
    CHECK(cache.length == 0);
    GenerationConfig g;
    g.max_new_tokens = 1;
    CHECK(error_of([&] { tiny().generate(ids, no_pixels(), g, none); }).find("max_position_embeddings 2048") !=
          std::string::npos);
}

TEST_CASE("generation budgets past the context stop where the context is full", "[prompt][budget]") {
    // max_position_embeddings 40: a prompt of 4 positions leaves 36; the id
    // chosen at the last position is kept but not fed
    const auto m = tiny_with([](ModelConfig& c) { c.text.max_position_embeddings = 40; });
    GenerationConfig g;
    g.max_new_tokens = std::numeric_limits<std::size_t>::max();
    g.stop_at_eos = false;
    const Generation<float> out = m.generate({1, 5, 7, 9}, no_pixels(), g, Hooks<float>());
    CHECK(out.stop == StopReason::ContextFull);
    CHECK(out.ids.size() == 40 - 4 + 1);
    CHECK(out.step_logits.shape(0) == 40 - 4);
}

TEST_CASE("an absurd budget with no position limit allocates nothing for it", "[prompt][budget]") {
    // dynamic rope_scaling sets no limit: the cache must not be sized for the budget
    const auto m = tiny_with([](ModelConfig& c) { c.text.rope_scaling = RopeScaling{"dynamic", 2.0}; });
    GenerationConfig g;
    g.max_new_tokens = std::size_t(1) << 50;
    g.stop_at_eos = false;
    std::size_t seen = 0;
    g.on_token = [&](std::int64_t) { return ++seen < 3; };
    const Generation<float> out = m.generate({1, 5, 7}, no_pixels(), g, Hooks<float>());
    CHECK(out.stop == StopReason::Stopped);
    CHECK(out.ids.size() == 3);
}

TEST_CASE("sampling settings out of range are refused naming the setting", "[prompt][errors]") {
    const double nan = std::nan(""), inf = std::numeric_limits<double>::infinity();
    for (double t : {0.0, -1.0, nan, inf}) {
        SamplingConfig s;
        s.do_sample = true;
        s.temperature = t;
        INFO("temperature " << t);
        CHECK(error_of([&] { Sampler{s}; }).find("sampling temperature") != std::string::npos);
    }
    for (double p : {-0.1, 1.5, nan}) {
        SamplingConfig s;
        s.do_sample = true;
        s.top_p = p;
        INFO("top_p " << p);
        CHECK(error_of([&] { Sampler{s}; }).find("sampling top_p") != std::string::npos);
    }
    for (double p : {0.0, 1.0}) {
        SamplingConfig s;
        s.do_sample = true;
        s.top_p = p;
        CHECK(error_of([&] { Sampler{s}; }).empty());
    }
    // generate checks the settings before it chooses anything
    GenerationConfig g;
    g.max_new_tokens = 4;
    g.sampling.do_sample = true;
    g.sampling.temperature = -1;
    CHECK(error_of([&] { tiny().generate({1, 5}, no_pixels(), g, Hooks<float>()); }).find("sampling temperature -1") !=
          std::string::npos);
}

TEST_CASE("the tokenizer refuses ids outside its pieces and broken files", "[prompt][tokenizer][errors]") {
    const Tokenizer tok(kTokenizer);
    const std::int64_t n = tok.vocab_size();
    for (std::int64_t id : {n, std::int64_t(-1), std::int64_t(-200)}) {
        const std::string e = error_of([&] { tok.decode({1, id}); });
        INFO("id " << id << ": " << e);
        CHECK(e.find("token id " + std::to_string(id) + " is outside the vocabulary") != std::string::npos);
        CHECK(e.find("tokenizer.model") != std::string::npos);
    }
    // an empty prompt gives no ids (mm_utils.tokenizer_image_token encodes no
    // empty chunk), which check_prompt refuses; a marker alone gives the marker
    const std::vector<std::int64_t> empty = tok.encode_prompt("");
    CHECK(empty.empty());
    CHECK(error_of([&] { check_prompt(empty, 0, 320); }) == "input ids: the prompt is empty");
    CHECK(tok.encode_prompt("<|image|>") == std::vector<std::int64_t>{-200});

    const std::string missing = kTmp + "/no_tokenizer_here/tokenizer.model";
    CHECK(error_of([&] { Tokenizer{missing}; }).find(missing) != std::string::npos);
    const fs::path dir = fs::path(kTmp) / "prompt_errors_tokenizer";
    fs::remove_all(dir);
    fs::create_directories(dir);
    fs::copy_file(fs::path(kTokenizer) / "tokenizer.model", dir / "tokenizer.model");
    std::ofstream(dir / "tokenizer_config.json") << "{\"add_bos_token\": ";
    CHECK(error_of([&] { Tokenizer{dir.string()}; }).find("tokenizer_config.json: not a JSON object") !=
          std::string::npos);
    std::ofstream(dir / "tokenizer_config.json") << "{\"add_bos_token\": \"yes\"}";
    CHECK(error_of([&] { Tokenizer{dir.string()}; }).find("field add_bos_token must be true or false") !=
          std::string::npos);
    std::ofstream(dir / "tokenizer.model") << "not a sentencepiece model";
    fs::remove(dir / "tokenizer_config.json");
    CHECK(error_of([&] { Tokenizer{dir.string()}; }).find("tokenizer.model: cannot load the sentencepiece model") !=
          std::string::npos);
}
