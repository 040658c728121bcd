// What the commands that run the model share: the options that say which
// checkpoint to load and how (--model, --dtype, --weights), how images are
// prepared (--image-aspect-ratio), the modality-adaptive routing (--mam,
// --mam-parts, --mam-layers) and how tokens are chosen (--max-new-tokens,
// --temperature, --top-k, --top-p, --seed); and the steps behind them:
// loading the model, turning image files into pixel values.
//
// Without --model the commands run the tiny random-weight model of
// reference_outputs/tiny (default_model_dir()): installed, it sits in
// share/mplug-owl2/tiny beside the program's bin/; built, the program holds
// the path of the source tree's folder.
#pragma once

#include <CLI/CLI.hpp>

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "mplug_owl2/io/config.hpp"
#include "mplug_owl2/io/image.hpp"
#include "mplug_owl2/model/image_processor.hpp"
#include "mplug_owl2/model/load_model.hpp"
#include "progress.hpp"

namespace cli {

// "a,b,c" -> the non-empty items; `what` names the option in errors.
inline std::vector<std::string> split_list(const std::string& s, const std::string& what) {
    std::vector<std::string> out;
    std::stringstream in(s);
    std::string item;
    while (std::getline(in, item, ',')) {
        if (item.empty()) mplug_owl2::fail(what, ": empty item in \"", s, "\"");
        out.push_back(item);
    }
    if (out.empty() || s.back() == ',') mplug_owl2::fail(what, ": expected a comma-separated list, found \"", s, "\"");
    return out;
}

inline long long parse_integer(const std::string& s, const std::string& what) {
    std::size_t used = 0;
    long long v = 0;
    try {
        v = std::stoll(s, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used == 0 || used != s.size()) mplug_owl2::fail(what, ": \"", s, "\" is not an integer");
    return v;
}

// "1,-200,5" -> token ids (-200 marks an image).
inline std::vector<std::int64_t> parse_ids(const std::string& s, const std::string& what) {
    std::vector<std::int64_t> ids;
    for (const auto& item : split_list(s, what)) ids.push_back(parse_integer(item, what));
    return ids;
}

// Ids as the --input-ids / --prompt-ids options take them.
template <class Int>
std::string ids_text(const std::vector<Int>& ids) {
    std::string s;
    for (std::size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
    return s;
}

// Refuses an output file that cannot be written, before any work is done:
// its folder must exist and be writable, and the path must not be a folder.
// (The file itself is written through a temporary name and renamed.)
inline void check_output_file(const std::string& path, const std::string& what) {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::path p(path);
    const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
    if (fs::is_directory(p, ec)) mplug_owl2::fail(what, " ", path, ": is a folder, expected a file name");
    if (!fs::exists(dir, ec)) mplug_owl2::fail(what, " ", path, ": the folder ", dir.string(), " does not exist");
    if (!fs::is_directory(dir, ec)) mplug_owl2::fail(what, " ", path, ": ", dir.string(), " is not a folder");
    if (::access(dir.c_str(), W_OK) != 0)
        mplug_owl2::fail(what, " ", path, ": the folder ", dir.string(), " is not writable");
}

// For options holding counts: CLI11 reads "-1" into an unsigned option as
// its largest value, so a sign is refused (as a usage error).
inline CLI::Validator count_validator() {
    return CLI::Validator(
        [](std::string& s) {
            const auto first = s.find_first_not_of(" \t");
            return first != std::string::npos && s[first] == '-' ? "expected a count (0 or more), found " + s
                                                                 : std::string();
        },
        "COUNT");
}

// ---- the model ----------------------------------------------------------------------

// The tiny model's folder: share/mplug-owl2/tiny next to the installed
// program's bin/ if it is there, else the source tree's reference_outputs/tiny.
inline std::string default_model_dir() {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        const fs::path installed = exe.parent_path().parent_path() / "share" / "mplug-owl2" / "tiny";
        if (fs::is_regular_file(installed / "config.json", ec)) return installed.string();
    }
    return MPLUG_OWL2_SOURCE_TINY_MODEL;
}

struct ModelOptions {
    std::string model_dir = default_model_dir();
    std::string dtype = "float";
    std::string weights;  // half or float; empty: half with float compute
    std::string aspect;   // empty: config.json's image_aspect_ratio, else pad
    std::string mam = "official", mam_parts, mam_layers;
    bool strict = false;
};

inline void add_model_options(CLI::App* sub, ModelOptions& o) {
    sub->add_option("--model", o.model_dir,
                    "checkpoint folder: config.json and the weights in any Hugging Face layout (default: the tiny "
                    "random-weight model)");
    sub->add_option("--dtype", o.dtype, "compute dtype: float or double")->check(CLI::IsMember({"float", "double"}));
    sub->add_flag("--strict", o.strict,
                  "refuse a checkpoint holding tensors no module reads (except rotary_emb.inv_freq), naming them");
    sub->add_option("--weights", o.weights,
                    "fp16/bf16 matrices with float compute: half (kept as stored, the default) or float (converted "
                    "on load, twice the memory)")
        ->check(CLI::IsMember({"half", "float"}));
    sub->add_option("--image-aspect-ratio", o.aspect, "pad or resize (default: config.json's, else pad)")
        ->check(CLI::IsMember({"pad", "resize"}));
    sub->add_option("--mam", o.mam, "modality-adaptive routing: official, text, visual or swap")
        ->check(CLI::IsMember({"official", "text", "visual", "swap"}));
    sub->add_option("--mam-parts", o.mam_parts,
                    "parts the routing acts on (default all): input_layernorm,post_attention_layernorm,k_proj,v_proj");
    sub->add_option("--mam-layers", o.mam_layers, "decoder layers the routing acts on (default all), e.g. 0,3");
}

inline mplug_owl2::MamRouting parse_routing(const ModelOptions& o, std::size_t layers) {
    using namespace mplug_owl2;
    MamRouting r;
    r.policy = mam_policy_from_name(o.mam);
    if (r.policy == MamPolicy::Official && (!o.mam_parts.empty() || !o.mam_layers.empty()))
        fail("--mam-parts and --mam-layers restrict an ablation: give --mam text, visual or swap as well");
    if (!o.mam_parts.empty())
        for (const auto& p : split_list(o.mam_parts, "--mam-parts")) r.parts.insert(mam_part_from_name(p));
    if (!o.mam_layers.empty())
        for (const auto& l : split_list(o.mam_layers, "--mam-layers")) {
            const long long v = parse_integer(l, "--mam-layers");
            if (v < 0 || static_cast<std::size_t>(v) >= layers)
                fail("--mam-layers: layer ", v, " does not exist (the decoder has ", layers, " layers)");
            r.layers.insert(static_cast<std::size_t>(v));
        }
    return r;
}

// Calls f(float{}) or f(double{}) after --dtype.
template <class F>
void with_dtype(const ModelOptions& o, F&& f) {
    if (o.dtype == "double") {
        if (o.weights == "half")
            mplug_owl2::fail("--weights half: half-precision weights are for --dtype float; double compute converts "
                             "every weight");
        f(double{});
    } else {
        f(float{});
    }
}

// The model of --model, loaded as --dtype and --weights say, routed as --mam says.
template <class T>
mplug_owl2::MplugOwl2LlamaForCausalLM<T> load_cli_model(const ModelOptions& o, const mplug_owl2::ModelConfig& config) {
    using namespace mplug_owl2;
    LoadOptions load;
    load.keep_half_precision = o.weights != "float";
    load.pack_decoder_weights = true;  // the commands never read a weight matrix themselves
    const auto weights = std::make_shared<const LoadProgress>(std::shared_ptr<const TensorSource>(open_checkpoint(o.model_dir)));
    MplugOwl2LlamaForCausalLM<T> model = load_model<T>(weights, config, load);
    weights->finish();
    if (o.strict) check_strict(model.unused_tensors, "--model " + o.model_dir);
    // the buffers the model recomputes (rotary_emb.inv_freq) are no news
    const std::vector<std::string> unused = unexpected_tensors(model.unused_tensors);
    if (!unused.empty())
        std::cerr << "note: " << unused.size() << " tensors of the checkpoint are not used (first: " << unused.front()
                  << ")\n";
    model.set_mam_routing(parse_routing(o, model.model.layers.size()));
    return model;
}

// ---- images -------------------------------------------------------------------------

// Image files as the model's input [N, 3, S, S] in T, with the checkpoint
// folder's settings (ImagePreprocessing) and --aspect over its
// image_aspect_ratio. `each` sees every image after preprocessing.
template <class T>
xt::xtensor<T, 4> image_pixels(const ModelOptions& o, const mplug_owl2::ModelConfig& config,
                               const std::vector<std::string>& images,
                               const std::function<void(std::size_t, const mplug_owl2::ProcessedImage&)>& each = {}) {
    mplug_owl2::ImagePreprocessing p = mplug_owl2::ImagePreprocessing::of_checkpoint(o.model_dir, config);
    if (!o.aspect.empty()) p.aspect = o.aspect;
    return p.pixel_values<T>(images, each);
}

// ---- generation ---------------------------------------------------------------------

struct GenerateOptions {
    std::size_t max_new_tokens = 512;
    double temperature = 0;  // 0: greedy
    std::size_t top_k = 0;
    double top_p = 1.0;
    std::uint64_t seed = 0;
};

// `o` holds the command's defaults.
inline void add_generate_options(CLI::App* sub, GenerateOptions& o) {
    sub->add_option("--max-new-tokens", o.max_new_tokens, "most tokens to generate")->check(count_validator());
    sub->add_option("--temperature", o.temperature, "0: greedy; above 0: sample at this temperature");
    sub->add_option("--top-k", o.top_k, "sampling: keep the k most likely tokens (0: all)")
        ->check(count_validator());
    sub->add_option("--top-p", o.top_p, "sampling: keep the most likely tokens up to this probability (1: all)");
    sub->add_option("--seed", o.seed, "sampling: seed of the random draws")->check(count_validator());
}

// The generation settings of the options: greedy at temperature 0 (the
// official evaluation), else sampling; stops at config.json's end-of-sequence ids.
inline mplug_owl2::GenerationConfig generation_config(const GenerateOptions& o) {
    using namespace mplug_owl2;
    if (!(o.temperature >= 0) || !std::isfinite(o.temperature))
        fail("--temperature ", o.temperature, ": expected 0 (greedy) or a positive number");
    if (!(o.top_p >= 0 && o.top_p <= 1)) fail("--top-p ", o.top_p, ": expected a number in [0, 1]");
    if (o.temperature == 0 && (o.top_k != 0 || o.top_p != 1.0))
        fail("--top-k and --top-p shape sampling: give --temperature above 0 as well");
    GenerationConfig g;
    g.max_new_tokens = o.max_new_tokens;
    g.stop_at_eos = true;
    g.sampling.do_sample = o.temperature > 0;
    if (g.sampling.do_sample) g.sampling.temperature = o.temperature;
    g.sampling.top_k = o.top_k;
    g.sampling.top_p = o.top_p;
    g.sampling.seed = o.seed;
    g.sampling.check();
    return g;
}

// Refuses a prompt longer than the context, or a token budget that does not
// fit after it, naming the budget's option and the limit.
inline void check_prompt_context(const std::vector<std::int64_t>& ids, std::size_t budget,
                                 const mplug_owl2::ModelConfig& config, const std::string& budget_option) {
    mplug_owl2::check_context(mplug_owl2::prompt_positions(ids, config), budget, config.text, budget_option);
}

}  // namespace cli
