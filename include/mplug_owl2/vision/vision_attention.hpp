// `model.vision_model.encoder.layers.i.self_attn`: MplugOwlVisionAttention
// of visual_encoder.py. Full (unmasked) multi-head self-attention within each
// image. The fused `query_key_value` projection lays its 3·D outputs out per
// head — [head][q, k, v][head_dim] (the official reshape to
// (L, heads, 3, head_dim)) — not as three D-wide blocks.
#pragma once

#include <cmath>
#include <string>

#include "../core/linear.hpp"
#include "../io/config.hpp"
#include "../kernels/attention.hpp"
#include "image_batch.hpp"

namespace mplug_owl2 {

template <class T>
struct VisionAttention {
    std::string name;                // ...layers.i.self_attn
    std::size_t num_heads = 0, head_dim = 0;
    Linear<T> query_key_value;       // [3·D, D], bias
    Linear<T> dense;                 // [D, D], bias

    void load(WeightLoader& w, const VisionConfig& c, const std::string& path) {
        name = path;
        const auto D = static_cast<std::size_t>(c.hidden_size);
        num_heads = static_cast<std::size_t>(c.num_attention_heads);
        if (num_heads == 0 || D % num_heads != 0)
            fail(path, ": num_attention_heads ", num_heads, " must divide hidden_size ", D);
        head_dim = D / num_heads;
        query_key_value.load(w, path + ".query_key_value", D, 3 * D, true);
        dense.load(w, path + ".dense", D, D, true);
    }

    // x [N·L, D] (N images of L rows) -> [N·L, D]
    Matrix<T> forward(const Matrix<T>& x, std::size_t n_images, const Hooks<T>& hooks) const {
        const std::size_t L = rows_per_image(x, n_images, name), H = num_heads, hd = head_dim, D = H * hd;

        // 1. mixed = query_key_value(x)   [N·L, 3·D], head h's q, k, v at columns 3·hd·h + {0, hd, 2·hd}
        const Matrix<T> mixed = query_key_value.forward(x, hooks, image_batch_shape(n_images, L, 3 * D));

        // 2. per image and head: softmax(q·kᵀ · hd^−½) · v   [N·L, D], head h at columns hd·h
        Matrix<T> context = Matrix<T>::from_shape({x.shape(0), D});
        const T scale = T(1) / std::sqrt(T(hd));
        for (std::size_t n = 0; n < n_images; ++n) {
            const T* qkv = &mixed(n * L, 0);
            kernels::multi_head_attention<T>(H, L, L, hd, scale, {qkv, 3 * D, 3 * hd}, {qkv + hd, 3 * D, 3 * hd},
                                             {qkv + 2 * hd, 3 * D, 3 * hd}, {&context(n * L, 0), D, hd});
        }

        // 3. dense   [N·L, D]
        const Shape shape = image_batch_shape(n_images, L, D);
        Matrix<T> y = dense.forward(context, hooks, shape);
        hooks.report(name, y, shape);
        return y;
    }
};

}  // namespace mplug_owl2
