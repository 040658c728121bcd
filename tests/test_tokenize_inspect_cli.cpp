// `mplug-owl2 tokenize`, `detokenize`, `inspect` and the summary `trace`
// prints, end to end on the tiny reference model (reference_outputs/tiny,
// whose tokenizer.model is the 320-piece test tokenizer):
//   - tokenize's last line is the official tokenisation of the prompt
//     (tests/fixtures/tokenizer/expected.json, computed with sentencepiece in
//     Python) and the library's Tokenizer::encode_prompt;
//   - detokenize prints Tokenizer::decode of the ids;
//   - trace, with no --model, runs the tiny model and its summary names the
//     file, the tensor count and the official greedy ids (cases.json);
//   - inspect lists every tensor of that file, prints one, and compares a
//     file with itself as zero difference.
#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>

#include "cli_run.hpp"
#include "mplug_owl2/io/safetensors.hpp"
#include "mplug_owl2/io/tokenizer.hpp"
#include "parity.hpp"

using namespace mplug_owl2;
using cli_run::Run;

namespace {

const std::string kTmp = MPLUG_OWL2_TEST_TMP;
const std::string kTiny = parity::tiny_dir();

std::string join(const std::vector<std::int64_t>& ids) {
    std::string s;
    for (std::size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
    return s;
}

std::string last_line(const std::string& out) {
    std::string s = out;
    while (!s.empty() && s.back() == '\n') s.pop_back();
    const auto at = s.rfind('\n');
    return at == std::string::npos ? s : s.substr(at + 1);
}

}  // namespace

TEST_CASE("tokenize prints the official ids of a prompt on its last line", "[cli][tokenize]") {
    std::ifstream in(std::string(MPLUG_OWL2_FIXTURE_DIR) + "/tokenizer/expected.json");
    nlohmann::json expected;
    in >> expected;
    const Tokenizer tok(kTiny);
    for (const auto& e : expected["prompt_ids"]) {
        const std::string prompt = e["prompt"].get<std::string>();
        const Run r = cli_run::run("tokenize --tokenizer '" + kTiny + "/tokenizer.model' --prompt '" + prompt + "'",
                                   "tokenize");
        INFO(prompt << "\nstderr: " << r.err);
        REQUIRE(r.code == 0);
        CHECK(last_line(r.out) == join(e["legacy"].get<std::vector<std::int64_t>>()));
        CHECK(last_line(r.out) == join(tok.encode_prompt(prompt)));
    }
}

TEST_CASE("detokenize prints the tokenizer's decoding of the ids", "[cli][tokenize]") {
    const Tokenizer tok(kTiny);
    const std::vector<std::int64_t> ids = tok.encode_prompt("USER: Describe the picture. ASSISTANT:");
    const Run r = cli_run::run("detokenize --tokenizer '" + kTiny + "/tokenizer.model' --ids " + join(ids), "detokenize");
    INFO(r.err);
    REQUIRE(r.code == 0);
    CHECK(last_line(r.out) == tok.decode(ids));
}

TEST_CASE("trace without --model runs the tiny model and summarises what it wrote", "[cli][trace][inspect]") {
    const nlohmann::json c = parity::tiny_case("image_then_text");
    const std::string out = kTmp + "/summary_trace.safetensors";
    const Run r = cli_run::run("trace --input-ids=" + join(c["input_ids"].get<std::vector<std::int64_t>>()) +
                                   " --image '" + kTiny + "/" + c["images"][0].get<std::string>() + "' --generate " +
                                   std::to_string(c["generated_ids"].size()) + " --out '" + out + "'",
                               "summary_trace");
    INFO(r.err);
    REQUIRE(r.code == 0);
    CHECK(r.err.empty());
    const SafetensorsFile file(out);
    const std::size_t n = file.names().size();
    CHECK(r.out.find("wrote " + std::to_string(n) + " tensors to " + out + "\n") == 0);
    CHECK(r.out.find("greedy continuation: " + join(c["generated_ids"].get<std::vector<std::int64_t>>()) + "\n") !=
          std::string::npos);

    // inspect: every tensor listed, one printed, a file against itself is zero
    const Run list = cli_run::run("inspect '" + out + "'", "inspect_list");
    REQUIRE(list.code == 0);
    CHECK(list.out.find(out + ": " + std::to_string(n) + " tensors\n") == 0);
    for (const std::string& name : file.names()) CHECK(list.out.find("\n" + name + " ") != std::string::npos);
    const Run one = cli_run::run("inspect '" + out + "' generated_ids", "inspect_one");
    REQUIRE(one.code == 0);
    std::string ids_line;
    for (auto id : c["generated_ids"]) ids_line += (ids_line.empty() ? "" : " ") + std::to_string(id.get<std::int64_t>());
    CHECK(last_line(one.out) == ids_line);
    const Run diff = cli_run::run("inspect '" + out + "' --diff '" + out + "'", "inspect_diff");
    REQUIRE(diff.code == 0);
    std::istringstream lines(diff.out);
    std::string line;
    std::size_t compared = 0;
    while (std::getline(lines, line)) {
        std::istringstream cols(line);
        std::string name, max_diff, rms, ratio;
        cols >> name >> max_diff >> rms >> ratio;
        if (file.find(name) == nullptr) continue;
        ++compared;
        CHECK(max_diff == "0");
    }
    CHECK(compared == n);
}
