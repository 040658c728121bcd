// `model.visual_abstractor.encoder.layers.i.crossattention`:
// MplugOwlVisualAbstractorAttention of visual_encoder.py. Normalises the
// queries (norm1) and the vision features (normk), lets the queries attend
// over both together, then applies the cross output:
//   xn = norm1(x); vn = normk(v)
//   kv = [xn ; vn] per image
//   out = output(attention(xn, kv), xn)
// norm1 and normk are nn.LayerNorm(encoder_hidden_size) with the library
// default eps 1e-5, not the config's layer_norm_eps. Because norm1 runs over
// the queries and [xn ; vn] is one tensor, the official module only works
// when hidden_size equals encoder_hidden_size.
#pragma once

#include <algorithm>
#include <string>

#include "../core/layer_norm.hpp"
#include "../io/config.hpp"
#include "../vision/image_batch.hpp"
#include "visual_abstractor_cross_output.hpp"
#include "visual_abstractor_multi_head_attention.hpp"

namespace mplug_owl2 {

template <class T>
struct VisualAbstractorAttention {
    std::string name;  // model.visual_abstractor.encoder.layers.i.crossattention
    VisualAbstractorMultiHeadAttention<T> attention;
    VisualAbstractorCrossOutput<T> output;
    LayerNorm<T> norm1;  // over the queries, eps 1e-5
    LayerNorm<T> normk;  // over the vision features, eps 1e-5

    static constexpr double kNormEps = 1e-5;  // nn.LayerNorm's default

    void load(WeightLoader& w, const AbstractorConfig& c, const std::string& path) {
        name = path;
        if (c.hidden_size != c.encoder_hidden_size)
            fail(path, ": hidden_size ", c.hidden_size, " must equal encoder_hidden_size ", c.encoder_hidden_size,
                 " (the queries and the vision features share norm1's width and one key/value tensor)");
        const auto D = static_cast<std::size_t>(c.encoder_hidden_size);
        attention.load(w, c, path + ".attention");
        output.load(w, c, path + ".output");
        norm1.load(w, path + ".norm1", D, kNormEps);
        normk.load(w, path + ".normk", D, kNormEps);
    }

    // x [N·Q, D] (queries), v [N·Lv, D] (vision features) -> [N·Q, D]
    Matrix<T> forward(const Matrix<T>& x, const Matrix<T>& v, std::size_t n_images, const Hooks<T>& hooks) const {
        const std::size_t Q = rows_per_image(x, n_images, name), Lv = rows_per_image(v, n_images, name);
        const std::size_t D = x.shape(1);
        // 1. xn = norm1(x), vn = normk(v)
        const Matrix<T> xn = norm1.forward(x, hooks, image_batch_shape(n_images, Q, D));
        const Matrix<T> vn = normk.forward(v, hooks, image_batch_shape(n_images, Lv, D));
        // 2. kv = [xn ; vn] for each image   [N·(Q + Lv), D]
        Matrix<T> kv = Matrix<T>::from_shape({n_images * (Q + Lv), D});
        for (std::size_t n = 0; n < n_images; ++n) {
            std::copy_n(&xn(n * Q, 0), Q * D, &kv(n * (Q + Lv), 0));
            std::copy_n(&vn(n * Lv, 0), Lv * D, &kv(n * (Q + Lv) + Q, 0));
        }
        // 3. attention, then the cross output on the xn residual
        const Matrix<T> context = attention.forward(xn, kv, n_images, hooks);
        Matrix<T> out = output.forward(context, xn, n_images, hooks);
        hooks.report(name, out, image_batch_shape(n_images, Q, D));
        return out;
    }
};

}  // namespace mplug_owl2
