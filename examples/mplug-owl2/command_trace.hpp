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
//     for images decoded from files;
//   - with --attention, the attention probabilities of the prompt's forward
//     pass: model.layers.i.self_attn.probs [heads, L, L] and
//     model.visual_abstractor.encoder.layers.i.crossattention.attention.probs
//     [images, heads, Q, Q + vision positions].
// On stdout it ends with a summary: the file written, how many tensors, and
// the greedy continuation as ids and, when the model's folder holds a
// tokenizer.model, as text.
//
// --pixels takes the images' pixel values from a safetensors file instead:
// either pixel_values [N, 3, S, S], or image.0.pixel_values,
// image.1.pixel_values, ... [3, S, S] as the reference dumps of
// reference_outputs/ and this command's own traces hold them.
#pragma once

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdint>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "command_answer.hpp"
#include "common_options.hpp"
#include "mplug_owl2/core/recorder.hpp"
#include "mplug_owl2/io/safetensors.hpp"
#include "progress.hpp"

namespace cli {

struct TraceOptions {
    ModelOptions model;
    std::string out, input_ids;
    std::vector<std::string> images;
    std::string pixels;
    std::size_t generate = 0;
    bool attention = false;
};

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
        auto check_shape = [&](const std::string& name, const Shape& expected) {
            const TensorInfo* info = f.find(name);
            if (info->shape != expected)
                fail(o.pixels, ": ", name, " has shape ", shape_str(info->shape), ", expected ", shape_str(expected),
                     " (image_size ", S, ")");
        };
        std::vector<std::string> names;
        if (f.find("pixel_values")) {
            const Shape& shape = f.find("pixel_values")->shape;
            check_shape("pixel_values", {shape.empty() ? 0 : shape[0], 3, S, S});
            names.push_back("pixel_values");
        } else {
            for (std::size_t n = 0; f.find("image." + std::to_string(n) + ".pixel_values"); ++n) {
                names.push_back("image." + std::to_string(n) + ".pixel_values");
                check_shape(names.back(), {3, S, S});
            }
            if (names.empty())
                fail(o.pixels, ": no tensor named pixel_values [N, 3, ", S, ", ", S, "] or image.0.pixel_values [3, ",
                     S, ", ", S, "]");
        }
        std::vector<T> values;
        for (const std::string& name : names) {
            const xt::xarray<T> p = read_tensor<T>(f, name);
            values.insert(values.end(), p.begin(), p.end());
        }
        xt::xtensor<T, 4> pixels = xt::xtensor<T, 4>::from_shape({values.size() / (3 * S * S), 3, S, S});
        std::copy(values.begin(), values.end(), pixels.begin());
        return pixels;
    }
    // 2. image files: decoded and preprocessed, their bytes and pixel values recorded
    return image_pixels<T>(o.model, config, o.images, [&](std::size_t n, const ProcessedImage& img) {
        const std::string key = "image." + std::to_string(n);
        out.add(key + ".resized_u8", {img.resized.height, img.resized.width, 3}, img.resized.pixels.data());
        out.add(key + ".pixel_values", {3, S, S}, img.pixel_values.data());
    });
}

template <class T>
void run_trace(const TraceOptions& o) {
    using namespace mplug_owl2;
    // 1. the prompt, its images, the output path, then the model (checked in
    //    that order: the model is the slow part)
    const ModelConfig config = load_config(o.model.model_dir + "/config.json");
    const std::vector<std::int64_t> ids = parse_ids(o.input_ids, "--input-ids");
    SafetensorsWriter out;
    const xt::xtensor<T, 4> pixels = trace_pixels<T>(o, config, out);
    check_prompt(ids, pixels.shape(0), static_cast<std::size_t>(config.text.vocab_size));
    check_prompt_context(ids, o.generate, config, "--generate");
    check_output_file(o.out, "--out");
    const MplugOwl2LlamaForCausalLM<T> model = load_cli_model<T>(o.model, config);

    // 2. the prompt's forward pass, recorded; names reported more than once are counted
    Hooks<T> hooks;
    Recorder<T> recorder(hooks);
    hooks.request_attention_probs(o.attention);
    std::map<std::string, int> reports;
    const int counter = hooks.add([&](const std::string& name, Matrix<T>&, const Shape&) { ++reports[name]; });
    KVCache<T> cache = model.new_cache();
    const PreparedInputs<T> in = model.prepare_inputs(ids, model.encode_images(pixels, hooks), hooks);
    const Matrix<T> logits = model.forward(in, cache, hooks);
    recorder.pause();
    hooks.request_attention_probs(false);
    hooks.remove(counter);

    // 3. greedy steps through the cache, each feeding the previous choice
    GenerationConfig g;
    g.max_new_tokens = o.generate;
    g.stop_at_eos = false;
    Progress progress;
    std::size_t steps = 0;
    g.on_token = [&](std::int64_t) {
        progress.show("generating: " + std::to_string(++steps) + " of " + std::to_string(o.generate) + " tokens");
        return true;
    };
    const Generation<T> gen = model.generate(logits, cache, g, hooks);
    progress.finish();

    // 4. the file (through a temporary name, renamed when complete)
    for (const auto& kv : recorder.records())
        if (reports[kv.first] == 1) out.add(kv.first, kv.second.shape, kv.second.values.data());
    out.add("decoder.modality_indicators", {in.modality_indicators.size()}, in.modality_indicators.data());
    out.add("generate.step_logits", {gen.step_logits.shape(0), gen.step_logits.shape(1)}, gen.step_logits.data());
    out.add("generated_ids", {gen.ids.size()}, gen.ids.data());
    out.write(o.out);

    // 5. the summary
    std::cout << "wrote " << SafetensorsFile(o.out).names().size() << " tensors to " << o.out << "\n";
    if (!gen.ids.empty()) {
        std::cout << "greedy continuation: " << ids_text(gen.ids) << "\n";
        if (has_tokenizer(o.model.model_dir)) {
            const Tokenizer tok(o.model.model_dir);
            const bool known = std::all_of(gen.ids.begin(), gen.ids.end(), [&](std::int64_t id) { return id < tok.vocab_size(); });
            if (known) std::cout << "as text: " << tok.decode(gen.ids, false) << "\n";
        }
    }
}

inline void register_trace(CLI::App& app) {
    auto* sub = app.add_subcommand("trace", "Run the model on one prompt and write every activation (safetensors)");
    auto o = std::make_shared<TraceOptions>();
    add_model_options(sub, o->model);
    sub->add_option("--out", o->out, "output file (.safetensors)")->required();
    sub->add_option("--input-ids", o->input_ids, "prompt token ids, comma-separated; -200 marks an image")
        ->required();
    auto* image = sub->add_option("--image", o->images, "image file for the next -200 marker (repeatable, in order)");
    sub->add_option("--pixels", o->pixels,
                    "safetensors file with pixel_values [N,3,S,S] or image.N.pixel_values [3,S,S] (a reference dump "
                    "or a trace), used as is")
        ->excludes(image);
    sub->add_option("--generate", o->generate, "greedy decoding steps through the key/value cache")
        ->check(count_validator());
    sub->add_flag("--attention", o->attention,
                  "also write the attention probabilities of the decoder and the abstractor (…probs)");
    sub->callback([o] {
        with_dtype(o->model, [&](auto tag) { run_trace<decltype(tag)>(*o); });
    });
}

}  // namespace cli
