// Loading the whole model: config.json plus the weights, from a checkpoint
// folder in any of its four layouts (io/checkpoint.hpp: the release's fp16
// pytorch_model-000NN-of-00033.bin shards, sharded or single safetensors, a
// single pytorch_model.bin) or from any TensorSource. Every tensor a module
// needs must be there with its exact shape (errors name the tensor, the file
// and both shapes); tensors no module reads are listed in `unused_tensors`
// for the caller to report (the release stores e.g. each layer's
// rotary_emb.inv_freq, which is recomputed), or refused with `strict`.
//
// Weights. With float compute, matrices stored in fp16/bf16 stay in half
// precision by default: the Linear layers and the embedding table point
// into the memory-mapped checkpoint (no copy), and every one of them keeps
// the checkpoint open through a shared_ptr, so the 7B release (~16.5 GB of
// fp16) runs in about that much memory. Everything else (norms, biases,
// position tables, fp32 checkpoints) is converted to the compute type on
// load, and the checkpoint is closed once nothing points into it. With
// `keep_half_precision` false, or with double compute, every tensor is
// converted.
#pragma once

#include <algorithm>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "../io/checkpoint.hpp"
#include "../io/config.hpp"
#include "../io/tensor_source.hpp"
#include "mplug_owl2_model.hpp"

namespace mplug_owl2 {

struct LoadOptions {
    // Float compute only: fp16/bf16 matrices stay as stored, converted where
    // they are multiplied (kernels/half_gemm.hpp) or looked up (embeddings).
    bool keep_half_precision = true;
    // Refuse a checkpoint holding tensors no module reads, naming them,
    // except the buffers the official checkpoints store and the model
    // recomputes (`rotary_emb.inv_freq`).
    bool strict = false;
    // Float compute only: the decoder's float matrices packed for the fast
    // products (MplugOwl2LlamaForCausalLM::pack_decoder_weights); their
    // `weight` is then empty (Linear::dense_weight gives it back).
    bool pack_decoder_weights = false;
};

// The tensors of `unused` that strict loading refuses: all but the recomputed buffers.
inline std::vector<std::string> unexpected_tensors(const std::vector<std::string>& unused) {
    static const std::string recomputed = "rotary_emb.inv_freq";
    std::vector<std::string> out;
    for (const std::string& name : unused)
        if (name.size() < recomputed.size() || name.compare(name.size() - recomputed.size(), recomputed.size(), recomputed) != 0)
            out.push_back(name);
    return out;
}

// Throws, naming up to 5 of them, when strict loading refuses tensors of `unused`.
inline void check_strict(const std::vector<std::string>& unused, const std::string& where) {
    const std::vector<std::string> extra = unexpected_tensors(unused);
    if (extra.empty()) return;
    std::string names;
    for (std::size_t i = 0; i < std::min<std::size_t>(extra.size(), 5); ++i) names += (i ? ", " : "") + extra[i];
    fail(where, ": ", extra.size(), " tensor", extra.size() == 1 ? "" : "s", " that no module reads: ", names,
         extra.size() > 5 ? ", ..." : "", " (strict loading; without it they are listed as unused)");
}

// From a source the model may keep pointing into.
template <class T>
MplugOwl2LlamaForCausalLM<T> load_model(std::shared_ptr<const TensorSource> weights, const ModelConfig& config,
                                        const LoadOptions& options = {}) {
    WeightLoader w(*weights);
    if (std::is_same<T, float>::value && options.keep_half_precision) w.keep_half_precision(weights);
    MplugOwl2LlamaForCausalLM<T> m;
    m.load(w, config);
    if (options.strict) check_strict(m.unused_tensors, "the checkpoint");
    if (options.pack_decoder_weights) m.pack_decoder_weights();
    return m;
}

// From a source that the caller keeps alive for the model's lifetime (or
// that holds no half-precision matrices): every tensor converted.
template <class T>
MplugOwl2LlamaForCausalLM<T> load_model(const TensorSource& weights, const ModelConfig& config) {
    MplugOwl2LlamaForCausalLM<T> m;
    m.load(weights, config);
    return m;
}

// A checkpoint folder: dir/config.json and the weights in any layout.
template <class T>
MplugOwl2LlamaForCausalLM<T> load_model(const std::string& dir, const LoadOptions& options = {}) {
    const ModelConfig config = load_config(dir + "/config.json");
    LoadOptions lenient = options;
    lenient.strict = false;
    MplugOwl2LlamaForCausalLM<T> m =
        load_model<T>(std::shared_ptr<const TensorSource>(open_checkpoint(dir)), config, lenient);
    if (options.strict) check_strict(m.unused_tensors, "checkpoint " + dir);
    return m;
}

}  // namespace mplug_owl2
