// The command-line program against bad input, subcommand by subcommand (info,
// trace, ablate, answer, chat, synth-checkpoint, bench), run as a subprocess:
//   - usage errors (unknown options, values an option does not take, negative
//     counts) exit with code 1, everything else with code 2; either way
//     stderr is exactly one line "error: ..." naming the option or path;
//   - values only the model can judge (--mam-layers past the decoder's
//     layers, budgets past max_position_embeddings, sampling settings, ids);
//   - paths that cannot be read, outputs that cannot be written (a missing
//     folder, a read-only one, a folder in the way), and writes that fail
//     midway (a file size limit): no output file and no temporary file is
//     left behind;
//   - `info` on the tiny checkpoint: its lines against config.json and the
//     tensors of model.safetensors, counted from the file's own header.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_run.hpp"
#include "mplug_owl2/io/atomic_file.hpp"
#include "mplug_owl2/io/safetensors.hpp"
#include "parity.hpp"

using namespace mplug_owl2;
namespace fs = std::filesystem;

namespace {

const std::string kTmp = MPLUG_OWL2_TEST_TMP;
const std::string kTiny = parity::tiny_dir();
const std::string kTokenizer = std::string(MPLUG_OWL2_FIXTURE_DIR) + "/tokenizer";
const std::string kImage = kTiny + "/coffee.jpg";
const std::string kCases = kTiny + "/cases.json";

std::string q(const std::string& s) { return "'" + s + "'"; }

using cli_run::read_file;
using cli_run::Run;

// The program with `args`, stdin empty; `shell_prefix` runs before it in the same shell.
Run run(const std::string& args, const std::string& tag, const std::string& shell_prefix = "") {
    return cli_run::run(args, "cli_errors_" + tag, "", shell_prefix);
}

struct Bad {
    std::string args, message;
};

// Each of `bad` exits with `code` and exactly one stderr line "error: ..." holding its message.
void expect_errors(const std::vector<Bad>& bad, int code, const std::string& tag) {
    for (std::size_t i = 0; i < bad.size(); ++i) {
        const Run r = run(bad[i].args, tag + std::to_string(i));
        INFO("arguments: " << bad[i].args << "\nstderr: " << r.err);
        CHECK(r.code == code);
        CHECK(r.err.rfind("error: ", 0) == 0);
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
        CHECK(r.err.back() == '\n');
        CHECK(r.err.find(bad[i].message) != std::string::npos);
    }
}

// The tiny model with the test tokenizer (320 pieces = its vocabulary), for
// the commands that need one; a folder per test case (they may run at once).
std::string model_with_tokenizer(const std::string& name) {
    const fs::path dir = fs::path(kTmp) / ("cli_errors_model_" + name);
    fs::remove_all(dir);
    fs::create_directories(dir);
    for (const char* f : {"config.json", "model.safetensors"}) fs::copy_file(fs::path(kTiny) / f, dir / f);
    for (const char* f : {"tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"})
        fs::copy_file(fs::path(kTokenizer) / f, dir / f);
    return dir.string();
}

// A folder no file can be created in: a 0555 folder, or, where that does not
// stop writes (running as root), a path under a regular file.
std::string unwritable_folder() {
    const fs::path dir = fs::path(kTmp) / "cli_errors_readonly";
    fs::create_directories(dir);
    ::chmod(dir.c_str(), 0555);
    const fs::path probe = dir / "probe";
    const bool writable = std::ofstream(probe).good();
    if (!writable) return dir.string();
    fs::remove(probe);
    const fs::path file = fs::path(kTmp) / "cli_errors_regular_file";
    std::ofstream(file) << "a file, not a folder\n";
    return file.string();
}

// Nothing at `path`, and no temporary file beside it.
void expect_nothing_at(const std::string& path) {
    INFO("path: " << path);
    CHECK(!fs::exists(path));
    CHECK(!fs::exists(path + ".tmp"));
}

std::string ids_of_length(std::size_t n) {
    std::string s = "1";
    for (std::size_t i = 1; i < n; ++i) s += ",5";
    return s;
}

}  // namespace

TEST_CASE("every subcommand refuses unknown options with exit code 1", "[cli][errors]") {
    const std::string out = kTmp + "/cli_errors_unknown";
    const std::vector<Bad> bad = {
        {"info --model " + q(kTiny) + " --no-such-option", "--no-such-option"},
        {"trace --model " + q(kTiny) + " --input-ids=1 --out " + q(out) + " --no-such-option", "--no-such-option"},
        {"ablate --model " + q(kTiny) + " --cases " + q(kCases) + " --no-such-option", "--no-such-option"},
        {"answer --model " + q(kTiny) + " --prompt-ids=1 --no-such-option", "--no-such-option"},
        {"chat --model " + q(kTiny) + " --no-such-option", "--no-such-option"},
        {"synth-checkpoint --size tiny --out " + q(out) + " --no-such-option", "--no-such-option"},
        {"bench --no-such-option", "--no-such-option"},
        {"frobnicate", "subcommand"},
        {"", "subcommand"},
        {"info", "--model"},
        {"trace --model " + q(kTiny) + " --out " + q(out), "--input-ids"},
        {"ablate --model " + q(kTiny), "--cases"},
        {"synth-checkpoint --size tiny", "--out"},
    };
    expect_errors(bad, 1, "unknown");
    expect_nothing_at(out);
}

TEST_CASE("values an option does not take are usage errors with exit code 1", "[cli][errors]") {
    const std::string out = kTmp + "/cli_errors_values";
    const std::string model = " --model " + q(kTiny);
    const std::string trace = "trace" + model + " --input-ids=1 --out " + q(out);
    const std::string answer = "answer" + model + " --prompt-ids=1";
    const std::string chat = "chat" + model;
    const std::string ablate = "ablate" + model + " --cases " + q(kCases);
    const std::vector<Bad> bad = {
        {trace + " --dtype half", "--dtype"},
        {answer + " --dtype half", "--dtype"},
        {chat + " --dtype half", "--dtype"},
        {ablate + " --dtype half", "--dtype"},
        {trace + " --mam sideways", "--mam"},
        {answer + " --mam sideways", "--mam"},
        {chat + " --mam sideways", "--mam"},
        {ablate + " --mam text", "--mam"},  // the grid gives the routings
        {trace + " --weights quarter", "--weights"},
        {answer + " --image-aspect-ratio stretch", "--image-aspect-ratio"},
        {trace + " --generate -1", "--generate: expected a count (0 or more), found -1"},
        {trace + " --generate many", "--generate"},
        {answer + " --max-new-tokens -1", "--max-new-tokens: expected a count (0 or more), found -1"},
        {chat + " --max-new-tokens -5", "--max-new-tokens: expected a count (0 or more), found -5"},
        {ablate + " --max-new-tokens -1", "--max-new-tokens: expected a count (0 or more), found -1"},
        {answer + " --max-new-tokens 1.5", "--max-new-tokens"},
        {answer + " --top-k -2", "--top-k: expected a count (0 or more), found -2"},
        {answer + " --seed -1", "--seed: expected a count (0 or more), found -1"},
        {answer + " --temperature warm", "--temperature"},
        {"answer" + model + " --prompt-ids=", "--prompt-ids"},  // an empty id list
        {"trace" + model + " --out " + q(out) + " --input-ids=", "--input-ids"},
        {"synth-checkpoint --size tiny --out " + q(out) + " --seed -1", "--seed"},
        {"synth-checkpoint --size huge --out " + q(out), "--size"},
        {"synth-checkpoint --size tiny --layout zip --out " + q(out), "--layout"},
        {"synth-checkpoint --size tiny --dtype fp8 --out " + q(out), "--dtype"},
        {"bench --weights int4", "--weights"},
        {"bench --threads many", "--threads"},
        {"bench --llm-layers 2.5", "--llm-layers"},
    };
    expect_errors(bad, 1, "values");
    expect_nothing_at(out);
}

TEST_CASE("values the model or the run refuses exit with code 2 naming the option", "[cli][errors]") {
    const std::string out = kTmp + "/cli_errors_model_values.safetensors";
    const std::string tok = model_with_tokenizer("values");
    const std::string model = " --model " + q(kTiny);
    const std::string trace = "trace" + model + " --out " + q(out);
    const std::string answer = "answer" + model;
    const std::string chat = "chat --model " + q(tok);
    const std::string ablate = "ablate" + model + " --cases " + q(kCases);
    const std::string image = " --image " + q(kImage);
    const std::vector<Bad> bad = {
        // the routing against the tiny decoder's 2 layers
        {trace + " --input-ids=1,5 --mam swap --mam-layers 2", "--mam-layers: layer 2 does not exist (the decoder has 2 layers)"},
        {trace + " --input-ids=1,5 --mam text --mam-layers -1", "--mam-layers: layer -1 does not exist"},
        {answer + " --prompt-ids=1,5 --mam visual --mam-layers 0,x", "--mam-layers: \"x\" is not an integer"},
        {chat + " --mam swap --mam-layers 5", "--mam-layers: layer 5 does not exist"},
        {ablate + " --layers 0+2", "layer 2 does not exist"},
        {ablate + " --layers=-1", "layer -1 does not exist"},
        // budgets against max_position_embeddings 2048
        {answer + " --prompt-ids=1,5 --max-new-tokens 2047",
         "--max-new-tokens 2047: the prompt's 2 positions plus 2047 new tokens exceed the 2048 positions"},
        {answer + " --prompt-ids=1,5 --max-new-tokens 18446744073709551615", "--max-new-tokens 18446744073709551615"},
        {answer + image + " --prompt-ids=1,-200,5 --max-new-tokens 2038",
         "the prompt's 11 positions plus 2038 new tokens"},  // the image: Q + 1 = 9 positions
        {trace + " --input-ids=1,5 --generate 2047", "--generate 2047"},
        {ablate + " --max-new-tokens 5000", "--max-new-tokens 5000"},
        {chat + " --max-new-tokens 2048", "--max-new-tokens 2048: leaves no room for a prompt"},
        {trace + " --input-ids=" + ids_of_length(2049), "the prompt takes 2049 positions"},
        {trace + image + " --input-ids=-200," + ids_of_length(2040), "the prompt takes 2049 positions"},
        // sampling
        {answer + " --prompt-ids=1,5 --temperature -1", "--temperature -1"},
        {answer + " --prompt-ids=1,5 --temperature inf", "--temperature inf"},
        {answer + " --prompt-ids=1,5 --temperature nan", "--temperature nan"},
        {chat + " --temperature -0.5", "--temperature -0.5"},
        {answer + " --prompt-ids=1,5 --temperature 1 --top-p 1.5", "--top-p 1.5: expected a number in [0, 1]"},
        {answer + " --prompt-ids=1,5 --temperature 1 --top-p -0.5", "--top-p -0.5"},
        {chat + " --top-p 2", "--top-p 2"},
        {answer + " --prompt-ids=1,5 --top-k 3", "give --temperature above 0"},
        // ids
        {answer + " --prompt-ids=1,320", "id 320 at position 1 is outside the vocabulary [0, 320)"},
        {answer + " --prompt-ids=1,-5", "id -5 at position 1 is negative"},
        {answer + " --prompt-ids=1,5x", "--prompt-ids: \"5x\" is not an integer"},
        {answer + " --prompt-ids=1,99999999999999999999", "--prompt-ids: \"99999999999999999999\" is not an integer"},
        {answer + " --prompt-ids=,", "--prompt-ids: empty item"},
        {answer + " --prompt-ids=1,", "--prompt-ids: expected a comma-separated list"},
        {answer + " --prompt-ids=1,-200", "1 image marker (-200) for 0 images"},
        {answer + image + image + " --prompt-ids=1,-200", "1 image marker (-200) for 2 images"},
        {trace + " --input-ids=,5", "--input-ids: empty item"},
        {trace + " --input-ids=\"$(printf '1\\nx')\"", "--input-ids: \"1 x\" is not an integer"},  // one line
        // bench: depths up to the release's, prompt and decoding within the context
        {"bench --llm-layers -1", "--llm-layers -1: expected 0 to 32 layers"},
        {"bench --llm-layers 33", "--llm-layers 33: expected 0 to 32 layers"},
        {"bench --vision-layers 25", "--vision-layers 25: expected 0 to 24 layers"},
        {"bench --abstractor-layers -2", "--abstractor-layers -2"},
        {"bench --text 0", "--text 0"},
        {"bench --text 5000", "--text 5000"},
        {"bench --decode 0", "--decode 0"},
        {"bench --decode 2000", "--decode 2000"},
        {"bench --threads 0", "--threads 0"},
        {"bench --threads 100000", "--threads 100000"},
        {"bench --repeat 0", "--repeat 0"},
    };
    expect_errors(bad, 2, "model_values");
    expect_nothing_at(out);
}

TEST_CASE("ablate refuses cases whose prompts cannot run naming the case", "[cli][errors]") {
    const std::string tok = model_with_tokenizer("cases");
    auto cases = [](const std::string& name, const std::string& text) {
        const std::string path = kTmp + "/cli_errors_" + name + ".json";
        std::ofstream(path) << text;
        return q(path);
    };
    const std::string ablate = "ablate --model " + q(kTiny) + " --cases ";
    const std::vector<Bad> bad = {
        {ablate + cases("empty_ids", R"([{"name": "a", "input_ids": []}])"), "case a: input ids: the prompt is empty"},
        {"ablate --model " + q(tok) + " --cases " + cases("empty_prompt", R"([{"name": "b", "prompt": ""}])"),
         "case b: input ids: the prompt is empty"},
        {ablate + cases("string_id", R"([{"name": "c", "input_ids": [1, "5"]}])"), "(c): \"input_ids\" holds \"5\""},
        {ablate + cases("float_id", R"([{"name": "d", "input_ids": [1, 1.5]}])"), "(d): \"input_ids\" holds 1.5"},
        // nested 100000 deep: described by its size, never printed whole
        {ablate + cases("deep_id", R"([{"name": "h", "input_ids": [1, )" + std::string(100000, '[') +
                                       std::string(100000, ']') + "]}]"),
         "(h): \"input_ids\" holds an array of 1 entries"},
        {ablate + cases("vocab", R"([{"name": "e", "input_ids": [1, 400]}])"), "case e: input ids: id 400"},
        {ablate + cases("negative", R"([{"name": "f", "input_ids": [1, -3]}])"), "case f: input ids: id -3"},
        {ablate + cases("long", R"([{"name": "g", "input_ids": [1, 5]}])") + " --max-new-tokens 2047",
         "case g: --max-new-tokens 2047"},
    };
    expect_errors(bad, 2, "ablate_cases");
}

TEST_CASE("paths that cannot be read exit with code 2 naming the path", "[cli][errors]") {
    const std::string out = kTmp + "/cli_errors_unreadable.safetensors";
    const std::string missing = kTmp + "/cli_errors_no_such_folder";
    const std::string tok = model_with_tokenizer("unreadable");
    const std::string no_image = kTmp + "/cli_errors_no_such_image.png";
    const fs::path config_only = fs::path(kTmp) / "cli_errors_config_only";
    fs::create_directories(config_only);
    fs::copy_file(fs::path(kTiny) / "config.json", config_only / "config.json", fs::copy_options::overwrite_existing);
    const std::vector<Bad> bad = {
        {"info --model " + q(missing), missing + "/config.json"},
        {"info --model " + q(config_only.string()), config_only.string()},
        {"trace --model " + q(missing) + " --input-ids=1 --out " + q(out), missing + "/config.json"},
        {"ablate --model " + q(missing) + " --cases " + q(kCases), missing + "/config.json"},
        {"answer --model " + q(missing) + " --prompt-ids=1", missing + "/config.json"},
        {"chat --model " + q(missing), missing + "/config.json"},
        {"trace --model " + q(config_only.string()) + " --input-ids=1 --out " + q(out), config_only.string()},
        {"trace --model " + q(kTiny) + " --input-ids=1,-200 --image " + q(no_image) + " --out " + q(out), no_image},
        {"trace --model " + q(kTiny) + " --input-ids=1,-200 --pixels " + q(no_image) + " --out " + q(out), no_image},
        {"answer --model " + q(kTiny) + " --prompt-ids=1,-200 --image " + q(no_image), no_image},
        {"answer --model " + q(tok) + " --prompt hi --image " + q(no_image), no_image},
        {"chat --model " + q(tok) + " --image " + q(no_image), no_image},
        {"ablate --model " + q(kTiny) + " --cases " + q(missing + "/cases.json"), missing + "/cases.json"},
        {"synth-checkpoint --config " + q(missing + "/config.json") + " --out " + q(kTmp + "/cli_errors_synth_cfg"),
         missing + "/config.json"},
        {"synth-checkpoint --size tiny --tokenizer " + q(missing + "/tokenizer.model") + " --out " +
             q(kTmp + "/cli_errors_synth_tok"),
         missing + "/tokenizer.model"},
    };
    expect_errors(bad, 2, "unreadable");
    expect_nothing_at(out);
    CHECK(!fs::exists(kTmp + "/cli_errors_synth_cfg"));
    CHECK(!fs::exists(kTmp + "/cli_errors_synth_tok"));
}

TEST_CASE("outputs that cannot be written exit with code 2 naming the path and leave nothing", "[cli][errors]") {
    const std::string locked = unwritable_folder();
    const std::string missing = kTmp + "/cli_errors_no_such_out_folder";
    const std::string folder = kTmp + "/cli_errors_a_folder";
    fs::create_directories(folder);
    const std::string trace = "trace --model " + q(kTiny) + " --input-ids=1,5 --out ";
    const std::string ablate = "ablate --model " + q(kTiny) + " --cases " + q(kCases) + " --case text_only --out ";
    const std::vector<std::string> targets = {missing + "/trace.safetensors", locked + "/trace.safetensors",
                                              missing + "/table.json", locked + "/table.csv"};
    const std::vector<Bad> bad = {
        {trace + q(targets[0]), targets[0]},
        {trace + q(targets[1]), targets[1]},
        {trace + q(folder), folder + ": is a folder"},
        {ablate + q(targets[2]), targets[2]},
        {ablate + q(targets[3]), targets[3]},
        {"synth-checkpoint --size tiny --out " + q(locked + "/synth"), locked + "/synth"},
    };
    expect_errors(bad, 2, "unwritable");
    for (const auto& t : targets) expect_nothing_at(t);
    CHECK(!fs::exists(locked + "/synth"));
    CHECK(fs::is_directory(folder));
    CHECK(fs::is_empty(folder));
}

TEST_CASE("a write that fails midway leaves neither the file nor a temporary one", "[cli][errors][atomic]") {
    // A file size limit makes the writes fail part way (SIGXFSZ ignored, so
    // the write calls fail instead of the process dying); 512-byte blocks.
    auto limited = [](int blocks) { return "trap '' XFSZ; ulimit -f " + std::to_string(blocks) + "; "; };

    const std::string trace_out = kTmp + "/cli_errors_midway.safetensors";
    std::remove(trace_out.c_str());
    const Run t = run("trace --model " + q(kTiny) + " --input-ids=1,5,7 --generate 2 --out " + q(trace_out), "midway_trace",
                      limited(16));
    INFO("trace stderr: " << t.err);
    CHECK(t.code == 2);
    CHECK(t.err.rfind("error: " + trace_out + ": write failed", 0) == 0);
    CHECK(std::count(t.err.begin(), t.err.end(), '\n') == 1);
    expect_nothing_at(trace_out);
    // the same run without the limit writes the file (so the limit is what failed)
    const Run ok = run("trace --model " + q(kTiny) + " --input-ids=1,5,7 --generate 2 --out " + q(trace_out), "midway_ok");
    CHECK(ok.code == 0);
    CHECK(fs::file_size(trace_out) > 16 * 512);
    fs::remove(trace_out);

    const std::string table = kTmp + "/cli_errors_midway.json";
    std::remove(table.c_str());
    const Run a = run("ablate --model " + q(kTiny) + " --cases " + q(kCases) + " --case text_only --out " + q(table),
                      "midway_ablate", limited(1));
    INFO("ablate stderr: " << a.err);
    CHECK(a.code == 2);
    CHECK(a.err.rfind("error: " + table + ": write failed", 0) == 0);
    expect_nothing_at(table);

    // synth-checkpoint removes every file it wrote, and the folder it made
    const std::string synth = kTmp + "/cli_errors_midway_synth";
    fs::remove_all(synth);
    const Run s = run("synth-checkpoint --size tiny --out " + q(synth), "midway_synth", limited(64));
    INFO("synth-checkpoint stderr: " << s.err);
    CHECK(s.code == 2);
    CHECK(s.err.rfind("error: ", 0) == 0);
    CHECK(s.err.find(synth) != std::string::npos);
    CHECK(!fs::exists(synth));
    // into a folder that holds other files: those stay, nothing else is left
    fs::create_directories(synth);
    std::ofstream(synth + "/notes.txt") << "kept\n";
    const Run s2 = run("synth-checkpoint --size tiny --single-file --layout safetensors --out " + q(synth),
                       "midway_synth2", limited(64));
    CHECK(s2.code == 2);
    std::vector<std::string> left;
    for (const auto& e : fs::directory_iterator(synth)) left.push_back(e.path().filename().string());
    CHECK(left == std::vector<std::string>{"notes.txt"});
    fs::remove_all(synth);
}

TEST_CASE("write_file_atomically replaces the target whole or not at all", "[cli][errors][atomic]") {
    const std::string path = kTmp + "/cli_errors_atomic.json";
    std::remove(path.c_str());
    write_file_atomically(path, "{\"a\": 1}\n");
    CHECK(read_file(path) == "{\"a\": 1}\n");
    CHECK(!fs::exists(path + ".tmp"));
    write_file_atomically(path, "{}\n");
    CHECK(read_file(path) == "{}\n");

    // the rename fails: a folder holds the target's name
    const std::string folder = kTmp + "/cli_errors_atomic_folder";
    fs::create_directories(folder);
    try {
        write_file_atomically(folder, "text");
        FAIL("no error");
    } catch (const Error& e) {
        CHECK(std::string(e.what()).find(folder) != std::string::npos);
    }
    CHECK(fs::is_directory(folder));
    CHECK(!fs::exists(folder + ".tmp"));
    // the same for a safetensors file
    SafetensorsWriter w;
    const std::int64_t v[2] = {1, 2};
    w.add("x", {2}, v);
    CHECK_THROWS_AS(w.write(folder), Error);
    CHECK(!fs::exists(folder + ".tmp"));
    // the open fails: no folder for the target
    CHECK_THROWS_WITH(write_file_atomically(kTmp + "/cli_errors_nothing/x.json", "text"),
                      Catch::Contains(kTmp + "/cli_errors_nothing/x.json"));
    CHECK(!fs::exists(kTmp + "/cli_errors_nothing"));
}

TEST_CASE("info shows the configuration and the tensors of the tiny checkpoint", "[cli][info]") {
    const Run r = run("info --model " + q(kTiny), "info");
    INFO(r.err);
    REQUIRE(r.code == 0);
    CHECK(r.err.empty());
    std::ifstream cfg_in(kTiny + "/config.json");
    nlohmann::json c;
    cfg_in >> c;
    const auto& v = c["visual_config"]["visual_model"];
    const auto& a = c["visual_config"]["visual_abstractor"];
    auto s = [](const nlohmann::json& j) { return j.dump(); };
    const int grid = v["image_size"].get<int>() / v["patch_size"].get<int>();
    // the tensors, from the safetensors header itself: 8-byte length, JSON, data
    std::ifstream st(kTiny + "/model.safetensors", std::ios::binary);
    unsigned char len[8];
    st.read(reinterpret_cast<char*>(len), 8);
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | len[i];
    std::string header(n, '\0');
    st.read(&header[0], static_cast<std::streamsize>(n));
    const nlohmann::json h = nlohmann::json::parse(header);
    std::size_t tensors = 0;
    std::uint64_t bytes = 0;
    for (const auto& kv : h.items()) {
        if (kv.key() == "__metadata__") continue;
        ++tensors;
        bytes += kv.value()["data_offsets"][1].get<std::uint64_t>() - kv.value()["data_offsets"][0].get<std::uint64_t>();
    }
    CHECK(bytes == fs::file_size(kTiny + "/model.safetensors") - 8 - n);
    const std::string vision_line = "vision encoder: " + s(v["num_hidden_layers"]) + " layers, width " +
                                    s(v["hidden_size"]) + ", " + s(v["num_attention_heads"]) + " heads of " +
                                    std::to_string(v["hidden_size"].get<int>() / v["num_attention_heads"].get<int>()) +
                                    ", MLP " + s(v["intermediate_size"]) + " (" + v["hidden_act"].get<std::string>() +
                                    "); images of " + s(v["image_size"]) + " px in patches of " + s(v["patch_size"]) +
                                    ": " + std::to_string(grid * grid) + " patches, " +
                                    std::to_string(grid * grid + 1) + " positions\n";
    const std::string decoder_line =
        "language decoder: " + s(c["num_hidden_layers"]) + " layers, width " + s(c["hidden_size"]) + ", " +
        s(c["num_attention_heads"]) + " heads of " +
        std::to_string(c["hidden_size"].get<int>() / c["num_attention_heads"].get<int>()) + " (" +
        s(c["num_key_value_heads"]) + " key/value heads), MLP " + s(c["intermediate_size"]) + " (" +
        c["hidden_act"].get<std::string>() + "), vocabulary " + s(c["vocab_size"]) + ", context " +
        s(c["max_position_embeddings"]) + ", rope_theta " +
        std::to_string(static_cast<int>(c["rope_theta"].get<double>())) + "\n";
    const std::string abstractor_line = "visual abstractor: " + s(a["num_hidden_layers"]) + " layers, " +
                                        s(a["num_learnable_queries"]) + " queries, width " + s(a["hidden_size"]) + ", ";
    CHECK(r.out.find(vision_line) != std::string::npos);
    CHECK(r.out.find(decoder_line) != std::string::npos);
    CHECK(r.out.find(abstractor_line) != std::string::npos);
    CHECK(r.out.find("stored dtypes: F32 (" + std::to_string(tensors) + " tensors") != std::string::npos);
    CHECK(r.out.find("model.safetensors  " + std::to_string(fs::file_size(kTiny + "/model.safetensors")) + " bytes, " +
                     std::to_string(tensors) + " tensors\n") != std::string::npos);
    CHECK(v["use_cls_token"].get<bool>());  // the + 1 above
}

TEST_CASE("the strict flag refuses a checkpoint with tensors no module reads naming them", "[cli][errors]") {
    // the tiny checkpoint plus one stray tensor
    const fs::path dir = fs::path(kTmp) / "cli_errors_strict";
    fs::remove_all(dir);
    fs::create_directories(dir);
    fs::copy_file(fs::path(kTiny) / "config.json", dir / "config.json");
    SafetensorsFile tiny(kTiny + "/model.safetensors");
    SafetensorsWriter w;
    for (const std::string& name : tiny.names()) {
        const TensorInfo* t = tiny.find(name);
        w.add_bytes(name, t->dtype, t->shape, std::vector<std::uint8_t>(t->data, t->data + t->nbytes));
    }
    w.add_bytes("model.layers.0.mlp.stray.weight", DType::F32, {2}, std::vector<std::uint8_t>(8, 0));
    w.write((dir / "model.safetensors").string());
    const std::string trace = "trace --model " + q(dir.string()) + " --input-ids=1,5 --out " +
                              q(kTmp + "/cli_errors_strict.safetensors");
    expect_errors({{trace + " --strict", "--model " + dir.string() +
                                             ": 1 tensor that no module reads: model.layers.0.mlp.stray.weight"}},
                  2, "strict");
    // without --strict: a note, and the run goes on
    const Run lenient = run(trace, "strict_lenient");
    INFO(lenient.err);
    CHECK(lenient.code == 0);
    CHECK(lenient.err.find("note: 1 tensors of the checkpoint are not used (first: model.layers.0.mlp.stray.weight)") !=
          std::string::npos);
    // the reference checkpoint passes strict loading
    CHECK(run("trace --model " + q(kTiny) + " --input-ids=1,5 --strict --out " +
                  q(kTmp + "/cli_errors_strict_tiny.safetensors"),
              "strict_tiny")
              .code == 0);
}
