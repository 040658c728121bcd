// `mplug-owl2 trace` end to end: the program runs the tiny model on each
// reference case (pixel values from a file written from the reference, or
// the image files themselves) and its output file must hold every reference
// tensor under the same name and shape, within the parity tolerance of the
// compute dtype, plus the greedy ids; bad input ends with one "error: ..."
// line and exit code 2, usage errors with exit code 1, and no output file.
#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "cli_run.hpp"
#include "mplug_owl2/io/safetensors.hpp"
#include "parity.hpp"

using namespace mplug_owl2;

namespace {

const std::string kCli = MPLUG_OWL2_CLI;
const std::string kTmp = MPLUG_OWL2_TEST_TMP;
const std::string kTiny = parity::tiny_dir();

using cli_run::Run;

Run trace(const std::string& args, const std::string& tag) {
    return cli_run::run("trace --model '" + kTiny + "' " + args, "trace_" + tag);
}

std::string ids_arg(const nlohmann::json& c) {
    std::string s;
    for (const auto& id : c["input_ids"]) s += (s.empty() ? "" : ",") + std::to_string(id.get<long long>());
    return "--input-ids=" + s;
}

// The reference's pixel values of a case as the --pixels file [N, 3, S, S].
std::string write_pixels(const parity::Case& ref, std::size_t n_images, const std::string& path) {
    std::vector<float> all;
    for (std::size_t n = 0; n < n_images; ++n) {
        const TensorInfo* t = ref.file().find("image." + std::to_string(n) + ".pixel_values");
        REQUIRE(t != nullptr);
        REQUIRE(t->dtype == DType::F32);
        const float* p = reinterpret_cast<const float*>(t->data);
        all.insert(all.end(), p, p + t->nbytes / 4);
    }
    SafetensorsWriter w;
    w.add("pixel_values", {n_images, 3, 56, 56}, all.data());
    w.write(path);
    return path;
}

// Every tensor of the reference case is in `out`, same shape, within tolerance.
void compare_with_reference(const parity::Case& ref, const std::string& out_path, DType compute, double tol,
                            bool with_image_bytes) {
    SafetensorsFile out(out_path);
    for (const auto& name : ref.names()) {
        const bool image_entry = name.rfind("image.", 0) == 0;
        if (image_entry && !with_image_bytes) {
            CHECK(out.find(name) == nullptr);  // not decoded here: not written
            continue;
        }
        INFO("tensor " << name);
        const TensorInfo* ours = out.find(name);
        REQUIRE(ours != nullptr);
        const TensorInfo* theirs = ref.file().find(name);
        CHECK(ours->shape == theirs->shape);
        if (theirs->dtype == DType::I64 || theirs->dtype == DType::U8 || image_entry) {
            CHECK(ours->dtype == theirs->dtype);  // ids, routes, bytes and float32 pixels: exact
            REQUIRE(ours->nbytes == theirs->nbytes);
            CHECK(std::memcmp(ours->data, theirs->data, ours->nbytes) == 0);
        } else {
            CHECK(ours->dtype == compute);
            ref.check(name, read_tensor<double>(out, name), tol);
        }
    }
}

}  // namespace

TEST_CASE("trace writes every reference activation of every tiny case", "[cli][trace]") {
    REQUIRE(!kCli.empty());
    for (const auto& c : parity::tiny_cases()) {
        const std::string name = c["name"];
        for (const std::string dtype : {"double", "float"}) {
            SECTION(name + " in " + dtype) {
                parity::Case ref(name);
                const std::size_t n_images = c["images"].size();
                std::string args = ids_arg(c) + " --dtype " + dtype + " --generate " +
                                   std::to_string(c["generated_ids"].size());
                if (n_images)
                    args += " --pixels '" + write_pixels(ref, n_images, kTmp + "/pixels_" + name + ".safetensors") + "'";
                if (!c["ablate"].is_null()) args += " --mam " + c["ablate"]["policy"].get<std::string>();
                const std::string out = kTmp + "/trace_" + name + "_" + dtype + ".safetensors";
                std::remove(out.c_str());
                const Run r = trace(args + " --out '" + out + "'", name);
                INFO(r.err);
                REQUIRE(r.code == 0);
                const bool dbl = dtype == "double";
                compare_with_reference(ref, out, dbl ? DType::F64 : DType::F32,
                                       dbl ? parity::tolerance<double>() : parity::tolerance<float>(), false);

                SafetensorsFile f(out);
                const auto ids = read_tensor<std::int64_t>(f, "generated_ids");
                CHECK(f.find("generated_ids")->dtype == DType::I64);
                const std::vector<std::int64_t> ours(ids.begin(), ids.end());
                const auto expected = c["generated_ids"].get<std::vector<std::int64_t>>();
                if (dbl)
                    parity::check_greedy_ids<double>(ours, expected, ref.get("logits"), ref.get("generate.step_logits"));
                else
                    parity::check_greedy_ids<float>(ours, expected, ref.get("logits"), ref.get("generate.step_logits"));
            }
        }
    }
}

TEST_CASE("trace decodes image files as the official preprocessing does", "[cli][trace]") {
    const auto c = parity::tiny_case("two_images");
    parity::Case ref("two_images");
    const std::string out = kTmp + "/trace_two_images_files.safetensors";
    const Run r = trace(ids_arg(c) + " --image '" + kTiny + "/synthetic_40x90.png' --image '" + kTiny +
                            "/synthetic_64x64.png' --image-aspect-ratio resize --dtype double --generate 3 --out '" +
                            out + "'",
                        "files");
    INFO(r.err);
    REQUIRE(r.code == 0);
    compare_with_reference(ref, out, DType::F64, parity::tolerance<double>(), true);
}

TEST_CASE("trace refuses bad input with one error line and exit code 2", "[cli][trace]") {
    const std::string out = kTmp + "/trace_refused.safetensors";
    std::remove(out.c_str());
    const std::string pixels = write_pixels(parity::Case("image_then_text"), 1, kTmp + "/pixels_refused.safetensors");
    struct Bad {
        std::string args, message;
    };
    const std::vector<Bad> bad = {
        {"--input-ids=1,-200,5", "1 image marker (-200) for 0 images"},
        {"--input-ids=1,5 --pixels '" + pixels + "'", "0 image markers (-200) for 1 image"},
        {"--input-ids=1,320", "id 320 at position 1 is outside the vocabulary"},
        {"--input-ids=1,-7", "id -7 at position 1 is negative"},
        {"--input-ids=1,x", "--input-ids: \"x\" is not an integer"},
        {"--input-ids=1,,2", "--input-ids: empty item"},
        {"--input-ids=-200 --pixels '" + pixels + "'", "image marker alone"},
        {"--input-ids=1,-200 --pixels '" + kTiny + "/model.safetensors'", "no tensor named pixel_values"},
        {"--input-ids=1,-200 --image '" + kTiny + "/cases.json'", "cases.json"},
        {"--input-ids=1,-200 --image '" + kTiny + "/nothing.png'", "nothing.png"},
        {"--input-ids=1,5 --mam swap --mam-layers 2", "--mam-layers: layer 2 does not exist"},
        {"--input-ids=1,5 --mam swap --mam-parts q_proj", "modality-adaptive part q_proj"},
        {"--input-ids=1,5 --mam-parts k_proj", "give --mam text, visual or swap"},
    };
    for (std::size_t i = 0; i < bad.size(); ++i) {
        const Run r = trace(bad[i].args + " --out '" + out + "'", "bad" + std::to_string(i));
        INFO("arguments: " << bad[i].args << "\nstderr: " << r.err);
        CHECK(r.code == 2);
        CHECK(r.err.rfind("error: ", 0) == 0);
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
        CHECK(r.err.find(bad[i].message) != std::string::npos);
        CHECK(!std::ifstream(out).good());
    }
    const std::string no_model = "'" + kCli + "' trace --model '" + kTmp + "/no_such_dir' --input-ids=1 --out '" + out +
                                 "' 2> '" + kTmp + "/trace_nodir.stderr'";
    const int status = std::system(no_model.c_str());
    CHECK(WEXITSTATUS(status) == 2);
    std::ifstream err(kTmp + "/trace_nodir.stderr");
    std::string line;
    std::getline(err, line);
    CHECK(line.rfind("error: ", 0) == 0);
    CHECK(line.find("no_such_dir/config.json") != std::string::npos);
    CHECK(!std::ifstream(out).good());
}

TEST_CASE("trace usage errors exit with code 1", "[cli][trace]") {
    const std::string out = kTmp + "/trace_usage.safetensors";
    std::remove(out.c_str());
    const std::vector<std::string> usage = {
        "--input-ids=1 --dtype half",
        "--input-ids=1 --mam sideways",
        "--input-ids=1 --image-aspect-ratio stretch",
        "--input-ids=1 --generate many",
        "--input-ids=1,-200 --image a.png --pixels b.safetensors",
        "--input-ids=1 --no-such-option",
    };
    for (std::size_t i = 0; i < usage.size(); ++i) {
        const Run r = trace(usage[i] + " --out '" + out + "'", "usage" + std::to_string(i));
        INFO("arguments: " << usage[i] << "\nstderr: " << r.err);
        CHECK(r.code == 1);
        CHECK(r.err.rfind("error: ", 0) == 0);
        CHECK(!std::ifstream(out).good());
    }
}

TEST_CASE("trace takes a prompt that starts with an image marker", "[cli][trace]") {
    const std::string pixels = write_pixels(parity::Case("image_then_text"), 1, kTmp + "/pixels_first.safetensors");
    const std::string out = kTmp + "/trace_image_first.safetensors";
    const Run r = trace("--input-ids=-200,1,5,17 --pixels '" + pixels + "' --generate 2 --out '" + out + "'", "first");
    INFO(r.err);
    REQUIRE(r.code == 0);
    SafetensorsFile f(out);
    const auto ind = read_tensor<std::int64_t>(f, "decoder.modality_indicators");
    CHECK(std::vector<std::int64_t>(ind.begin(), ind.end()) ==
          std::vector<std::int64_t>{1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0});
    CHECK(f.find("logits")->shape == Shape{12, 320});
    CHECK(f.find("logits")->dtype == DType::F32);
    CHECK(f.find("generate.step_logits")->shape == Shape{2, 320});
    CHECK(f.find("generated_ids")->shape == Shape{2});
    CHECK(f.find("model.embed_tokens") == nullptr);  // called twice (before and after the marker): left out
}
