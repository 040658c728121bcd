// `model.vision_model.encoder.layers.i`: MplugOwlVisionEncoderLayer of
// visual_encoder.py, a pre-norm transformer block:
//   h   = x + self_attn(input_layernorm(x))
//   out = h + mlp(post_attention_layernorm(h))
#pragma once

#include <string>

#include "../core/layer_norm.hpp"
#include "../io/config.hpp"
#include "image_batch.hpp"
#include "vision_attention.hpp"
#include "vision_mlp.hpp"

namespace mplug_owl2 {

template <class T>
struct VisionEncoderLayer {
    std::string name;                        // model.vision_model.encoder.layers.i
    VisionAttention<T> self_attn;
    LayerNorm<T> input_layernorm;            // eps = layer_norm_eps
    VisionMLP<T> mlp;
    LayerNorm<T> post_attention_layernorm;   // eps = layer_norm_eps

    void load(WeightLoader& w, const VisionConfig& c, const std::string& path) {
        name = path;
        const auto D = static_cast<std::size_t>(c.hidden_size);
        self_attn.load(w, c, path + ".self_attn");
        input_layernorm.load(w, path + ".input_layernorm", D, c.layer_norm_eps);
        mlp.load(w, c, path + ".mlp");
        post_attention_layernorm.load(w, path + ".post_attention_layernorm", D, c.layer_norm_eps);
    }

    // x [N·L, D] -> [N·L, D]
    Matrix<T> forward(const Matrix<T>& x, std::size_t n_images, const Hooks<T>& hooks) const {
        const Shape shape = image_batch_shape(n_images, rows_per_image(x, n_images, name), x.shape(1));
        // 1. h = x + self_attn(input_layernorm(x))
        Matrix<T> h = self_attn.forward(input_layernorm.forward(x, hooks, shape), n_images, hooks);
        h += x;
        // 2. out = h + mlp(post_attention_layernorm(h))
        Matrix<T> out = mlp.forward(post_attention_layernorm.forward(h, hooks, shape), n_images, hooks);
        out += h;
        hooks.report(name, out, shape);
        return out;
    }
};

}  // namespace mplug_owl2
