// `model.visual_abstractor.encoder.layers.i.crossattention.output.mlp`:
// MplugOwlVisualAbstractorMLP of visual_encoder.py, a SwiGLU feed-forward
// with a LayerNorm on the intermediate activations:
//   w2(ffn_ln(silu(w1(z)) * w3(z)))
// ffn_ln takes the config's layer_norm_eps (the other abstractor norms do not).
#pragma once

#include <string>

#include "../core/layer_norm.hpp"
#include "../core/linear.hpp"
#include "../io/config.hpp"
#include "../kernels/activations.hpp"
#include "../vision/image_batch.hpp"

namespace mplug_owl2 {

template <class T>
struct VisualAbstractorMLP {
    std::string name;      // ...crossattention.output.mlp
    std::string act_name;  // ...crossattention.output.mlp.act (nn.SiLU)
    Linear<T> w1;          // [I, D], bias
    Linear<T> w2;          // [D, I], bias
    Linear<T> w3;          // [I, D], bias
    LayerNorm<T> ffn_ln;   // over I, eps = layer_norm_eps

    void load(WeightLoader& w, const AbstractorConfig& c, const std::string& path) {
        name = path;
        act_name = path + ".act";
        const auto D = static_cast<std::size_t>(c.hidden_size), I = static_cast<std::size_t>(c.intermediate_size);
        w1.load(w, path + ".w1", D, I, true);
        w2.load(w, path + ".w2", I, D, true);
        w3.load(w, path + ".w3", D, I, true);
        ffn_ln.load(w, path + ".ffn_ln", I, c.layer_norm_eps);
    }

    // z [N·Q, D] -> [N·Q, D]
    Matrix<T> forward(const Matrix<T>& z, std::size_t n_images, const Hooks<T>& hooks) const {
        const std::size_t Q = rows_per_image(z, n_images, name);
        const Shape inner = image_batch_shape(n_images, Q, w1.out_features());
        // 1. a = silu(w1(z))   [N·Q, I]
        Matrix<T> a = w1.forward(z, hooks, inner);
        kernels::activate_inplace(Activation::SiLU, a);
        hooks.report(act_name, a, inner);
        // 2. a * w3(z)
        a *= w3.forward(z, hooks, inner);
        // 3. ffn_ln, then w2   [N·Q, D]
        const Shape shape = image_batch_shape(n_images, Q, w2.out_features());
        Matrix<T> y = w2.forward(ffn_ln.forward(a, hooks, inner), hooks, shape);
        hooks.report(name, y, shape);
        return y;
    }
};

}  // namespace mplug_owl2
