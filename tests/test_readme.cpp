// The README's C++ example (the block of "Using the library from C++",
// extracted into readme_example.cpp by tests/CMakeLists.txt): run from the
// repository's root, it prints the official code's greedy ids for the tiny
// model's image_then_text prompt, the shape of the hooked activation, and
// the official ids of the same prompt with every multiway module routed to
// its text copy (case mam_text_all); the README's comments say the same.
#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "cli_run.hpp"
#include "mplug_owl2/io/config.hpp"
#include "parity.hpp"

namespace {

std::string id_line(const nlohmann::json& ids, std::size_t n) {
    std::string line;
    for (std::size_t i = 0; i < n; ++i) line += std::to_string(ids[i].get<std::int64_t>()) + " ";
    return line;
}

}  // namespace

TEST_CASE("the README's C++ example runs and prints the official ids and the hooked shape", "[readme]") {
    const std::string out = std::string(MPLUG_OWL2_TEST_TMP) + "/readme_example.stdout";
    const std::string cmd = std::string("cd '") + MPLUG_OWL2_SOURCE_DIR + "' && '" + MPLUG_OWL2_README_EXAMPLE +
                            "' > '" + out + "' 2>&1 < /dev/null";
    const int status = std::system(cmd.c_str());
    const std::string printed = cli_run::read_file(out);
    INFO(printed);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);

    // what the example asks for: 3 greedy ids, layer 0's v_proj on the prompt
    const auto official = parity::tiny_case("image_then_text");
    const auto ablated = parity::tiny_case("mam_text_all");
    REQUIRE(ablated["input_ids"] == official["input_ids"]);
    REQUIRE(ablated["ablate"]["policy"] == "text");
    const mplug_owl2::ModelConfig config = mplug_owl2::load_config(parity::tiny_dir() + "/config.json");
    const std::size_t text_rows = official["input_ids"].size() - 1;  // one image marker
    const std::size_t rows = text_rows + std::size_t(config.abstractor.num_learnable_queries) + 1;
    const std::size_t cols = std::size_t(config.text.hidden_size / config.text.num_attention_heads *
                                         config.text.num_key_value_heads);
    const std::string shape = "v_proj " + std::to_string(rows) + "x" + std::to_string(cols);
    const std::string first = id_line(official["generated_ids"], 3), second = id_line(ablated["generated_ids"], 3);
    CHECK(printed == first + "\n" + shape + "\n" + second + "\n");

    // the README's comments state that output
    const std::string code = cli_run::read_file(MPLUG_OWL2_README_CODE);
    CHECK(code.find("// " + first.substr(0, first.size() - 1) + "\n") != std::string::npos);
    CHECK(code.find("// " + shape.substr(7) + ":") != std::string::npos);
    CHECK(code.find("// " + second.substr(0, second.size() - 1) + "\n") != std::string::npos);
}
