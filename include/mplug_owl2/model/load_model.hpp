// Loading the whole model: config.json plus the weights, from any
// TensorSource (a safetensors file, or whatever other checkpoint layout a
// TensorSource reads). Every tensor a module needs must be there with its
// exact shape (errors name the tensor, the file and both shapes); tensors no
// module reads are listed in `unused_tensors` (the published checkpoint
// stores e.g. each layer's rotary_emb.inv_freq, which is recomputed).
#pragma once

#include <string>

#include "../io/config.hpp"
#include "../io/safetensors.hpp"
#include "../io/tensor_source.hpp"
#include "mplug_owl2_model.hpp"

namespace mplug_owl2 {

template <class T>
MplugOwl2LlamaForCausalLM<T> load_model(const TensorSource& weights, const ModelConfig& config) {
    MplugOwl2LlamaForCausalLM<T> m;
    m.load(weights, config);
    return m;
}

// dir/config.json and dir/model.safetensors.
template <class T>
MplugOwl2LlamaForCausalLM<T> load_model(const std::string& dir) {
    const ModelConfig config = load_config(dir + "/config.json");
    const SafetensorsFile weights(dir + "/model.safetensors");
    return load_model<T>(weights, config);
}

}  // namespace mplug_owl2
