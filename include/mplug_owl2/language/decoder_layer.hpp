// `model.layers.i`: the official `LlamaDecoderLayer` of modeling_llama2.py.
// A pre-norm block whose two RMSNorms are modality-adaptive:
//     h   = x + self_attn(input_layernorm_m(x))
//     out = h + mlp(post_attention_layernorm_m(h))
// m = the position's modality (through the routing policy).
#pragma once

#include <string>

#include "../core/rms_norm.hpp"
#include "attention.hpp"
#include "mlp.hpp"
#include "multiway.hpp"

namespace mplug_owl2 {

template <class T>
struct DecoderLayer {
    std::string name;  // model.layers.i
    Multiway<RMSNorm<T>> input_layernorm;           // 2 × [D]
    Attention<T> self_attn;
    Multiway<RMSNorm<T>> post_attention_layernorm;  // 2 × [D]
    MLP<T> mlp;

    void load(WeightLoader& w, const TextConfig& c, const std::string& path, std::size_t layer) {
        name = path;
        const auto D = static_cast<std::size_t>(c.hidden_size);
        input_layernorm.load(w, path + ".input_layernorm", MamPart::InputLayernorm, layer, D, c.rms_norm_eps);
        self_attn.load(w, c, path + ".self_attn", layer);
        post_attention_layernorm.load(w, path + ".post_attention_layernorm", MamPart::PostAttentionLayernorm,
                                      layer, D, c.rms_norm_eps);
        mlp.load(w, c, path + ".mlp");
    }

    // x [L, D] -> [L, D]; appends this layer's keys and values to `cache`.
    Matrix<T> forward(const Matrix<T>& x, const ModalityIndicators& indicators, typename KVCache<T>::Layer& cache,
                      const MamRouting& routing, const Hooks<T>& hooks) const {
        // 1. a = input_layernorm_m(x)
        const Matrix<T> a = input_layernorm.forward(x, indicators, routing, hooks);
        // 2. h = x + self_attn(a)
        Matrix<T> h = self_attn.forward(a, indicators, cache, routing, hooks);
        h += x;
        // 3. b = post_attention_layernorm_m(h)
        const Matrix<T> b = post_attention_layernorm.forward(h, indicators, routing, hooks);
        // 4. out = h + mlp(b)
        Matrix<T> y = mlp.forward(b, hooks);
        y += h;
        hooks.report(name, y);
        return y;
    }
};

}  // namespace mplug_owl2
