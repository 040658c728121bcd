// `mplug-owl2 trace`: run the model on one prompt and write every activation
// to a safetensors file, under the names of the official modules (as the
// reference activations in reference_outputs/ name them), in the compute
// dtype:
//   - each module's output of the prompt's forward pass; modules the forward
//     calls more than once (embed_tokens on the text runs around images) are
//     left out, as in the reference;
//   - decoder.inputs_embeds [L, D], decoder.modality_indicators (I64 [L]),
//     logits [L, V];
//   - generate.step_logits [N, V] and generated_ids (I64 [N]): N greedy steps
//     through the key/value cache, step i feeding generated_ids[i];
//   - image.n.resized_u8 (U8 [S, S, 3]) and image.n.pixel_values (F32 [3, S, S])
//     for images decoded from files.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "mplug_owl2/core/recorder.hpp"
#include "mplug_owl2/io/config.hpp"
#include "mplug_owl2/io/image.hpp"
#include "mplug_owl2/io/safetensors.hpp"
#include "mplug_owl2/model/image_processor.hpp"
#include "mplug_owl2/model/load_model.hpp"

namespace cli {

struct TraceOptions {
    std::string model_dir, out, input_ids;
    std::vector<std::string> images;
    std::string pixels;
    std::string aspect;  // empty: config.json's image_aspect_ratio, else pad
    std::string dtype = "float";
    std::size_t generate = 0;
    std::string mam = "official", mam_parts, mam_layers;
};

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

inline mplug_owl2::MamRouting parse_routing(const TraceOptions& o, std::size_t layers) {
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

// The images as the model's input [N, 3, S, S] in T; images decoded from
// files also go to `out` (their resized bytes and float32 pixel values).
template <class T>
xt::xtensor<T, 4> trace_pixels(const TraceOptions& o, const mplug_owl2::ModelConfig& config,
                               mplug_owl2::SafetensorsWriter& out) {
    using namespace mplug_owl2;
    const auto S = static_cast<std::size_t>(config.vision.image_size);
    if (!o.pixels.empty()) {
        // 1. given pixel values: no decoding, no preprocessing
        const SafetensorsFile f(o.pixels);
        const TensorInfo* info = f.find("pixel_values");
        if (!info) fail(o.pixels, ": no tensor named pixel_values");
        if (info->shape.size() != 4 || info->shape[1] != 3 || info->shape[2] != S || info->shape[3] != S)
            fail(o.pixels, ": pixel_values has shape ", shape_str(info->shape), ", expected [N, 3, ", S, ", ", S,
                 "] (image_size ", S, ")");
        const xt::xarray<T> p = read_tensor<T>(f, "pixel_values");
        xt::xtensor<T, 4> pixels = xt::xtensor<T, 4>::from_shape({info->shape[0], 3, S, S});
        std::copy(p.begin(), p.end(), pixels.begin());
        return pixels;
    }
    // 2. image files: decode, image_aspect_ratio, CLIP preprocessing
    const std::string aspect = !o.aspect.empty() ? o.aspect : config.image_aspect_ratio.value_or("pad");
    ImageProcessorConfig pre;
    const std::string pre_path = o.model_dir + "/preprocessor_config.json";
    if (std::ifstream(pre_path).good()) {
        pre = ImageProcessorConfig::load(pre_path);
    } else {  // no processor file: CLIP's settings at the model's image_size
        pre.size = pre.crop_size = config.vision.image_size;
    }
    xt::xtensor<T, 4> pixels = xt::xtensor<T, 4>::from_shape({o.images.size(), 3, S, S});
    for (std::size_t n = 0; n < o.images.size(); ++n) {
        const ProcessedImage img = process_image(load_image(o.images[n]), aspect, pre);
        const auto& pv = img.pixel_values;
        if (pv.shape(1) != S || pv.shape(2) != S)
            fail(o.images[n], ": preprocessing gives ", pv.shape(1), "x", pv.shape(2), " pixels, the model takes ", S,
                 "x", S, " (check ", pre_path, ")");
        std::copy(pv.begin(), pv.end(), pixels.begin() + n * 3 * S * S);
        const std::string key = "image." + std::to_string(n);
        out.add(key + ".resized_u8", {img.resized.height, img.resized.width, 3}, img.resized.pixels.data());
        out.add(key + ".pixel_values", {3, S, S}, pv.data());
    }
    return pixels;
}

template <class T>
void run_trace(const TraceOptions& o) {
    using namespace mplug_owl2;
    // 1. the prompt, its images, then the model (checked in that order: the
    //    model is the slow part)
    const ModelConfig config = load_config(o.model_dir + "/config.json");
    std::vector<std::int64_t> ids;
    for (const auto& s : split_list(o.input_ids, "--input-ids")) ids.push_back(parse_integer(s, "--input-ids"));
    SafetensorsWriter out;
    const xt::xtensor<T, 4> pixels = trace_pixels<T>(o, config, out);
    check_prompt(ids, pixels.shape(0), static_cast<std::size_t>(config.text.vocab_size));
    MplugOwl2LlamaForCausalLM<T> model;
    {
        const SafetensorsFile weights(o.model_dir + "/model.safetensors");
        model.load(weights, config);
    }
    if (!model.unused_tensors.empty())
        std::cerr << "note: " << model.unused_tensors.size() << " tensors of the checkpoint are not used (first: "
                  << model.unused_tensors.front() << ")\n";
    model.set_mam_routing(parse_routing(o, model.model.layers.size()));

    // 2. the prompt's forward pass, recorded; names reported more than once are counted
    Hooks<T> hooks;
    Recorder<T> recorder(hooks);
    std::map<std::string, int> reports;
    const int counter = hooks.add([&](const std::string& name, Matrix<T>&, const Shape&) { ++reports[name]; });
    KVCache<T> cache = model.new_cache();
    const PreparedInputs<T> in = model.prepare_inputs(ids, model.encode_images(pixels, hooks), hooks);
    const Matrix<T> logits = model.forward(in, cache, hooks);
    recorder.pause();
    hooks.remove(counter);

    // 3. greedy steps through the cache, each feeding the previous choice
    if (cache.length + o.generate > max_positions(config.text))
        fail("--generate ", o.generate, ": the prompt's ", cache.length, " positions plus ", o.generate,
             " steps exceed the ", max_positions(config.text), " positions the config allows");
    GenerationConfig g;
    g.max_new_tokens = o.generate;
    g.stop_at_eos = false;
    const Generation<T> gen = model.generate(logits, cache, g, hooks);

    // 4. the file
    for (const auto& kv : recorder.records())
        if (reports[kv.first] == 1) out.add(kv.first, kv.second.shape, kv.second.values.data());
    out.add("decoder.modality_indicators", {in.modality_indicators.size()}, in.modality_indicators.data());
    out.add("generate.step_logits", {gen.step_logits.shape(0), gen.step_logits.shape(1)}, gen.step_logits.data());
    out.add("generated_ids", {gen.ids.size()}, gen.ids.data());
    out.write(o.out);
}

inline void register_trace(CLI::App& app) {
    auto* sub = app.add_subcommand("trace", "Run the model on one prompt and write every activation (safetensors)");
    auto o = std::make_shared<TraceOptions>();
    sub->add_option("--model", o->model_dir, "checkpoint folder (config.json, model.safetensors)")->required();
    sub->add_option("--out", o->out, "output file (.safetensors)")->required();
    sub->add_option("--input-ids", o->input_ids, "prompt token ids, comma-separated; -200 marks an image")
        ->required();
    auto* image = sub->add_option("--image", o->images, "image file for the next -200 marker (repeatable, in order)");
    sub->add_option("--pixels", o->pixels, "safetensors file with pixel_values [N,3,S,S] (float32), used as is")
        ->excludes(image);
    sub->add_option("--image-aspect-ratio", o->aspect, "pad or resize (default: config.json's, else pad)")
        ->check(CLI::IsMember({"pad", "resize"}));
    sub->add_option("--dtype", o->dtype, "compute dtype: float or double")->check(CLI::IsMember({"float", "double"}));
    sub->add_option("--generate", o->generate, "greedy decoding steps through the key/value cache");
    sub->add_option("--mam", o->mam, "modality-adaptive routing: official, text, visual or swap")
        ->check(CLI::IsMember({"official", "text", "visual", "swap"}));
    sub->add_option("--mam-parts", o->mam_parts,
                    "parts the routing acts on (default all): input_layernorm,post_attention_layernorm,k_proj,v_proj");
    sub->add_option("--mam-layers", o->mam_layers, "decoder layers the routing acts on (default all), e.g. 0,3");
    sub->callback([o] {
        if (o->dtype == "double")
            run_trace<double>(*o);
        else
            run_trace<float>(*o);
    });
}

}  // namespace cli
