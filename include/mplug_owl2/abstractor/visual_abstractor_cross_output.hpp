// `model.visual_abstractor.encoder.layers.i.crossattention.output`:
// MplugOwlVisualAbstractorCrossOutput of visual_encoder.py. The residual
// stream is the normalised queries (norm1's output), not the layer's input:
//   h   = xn + out_proj(attention)
//   out = h + mlp(norm2(h))
// norm2 is nn.LayerNorm(dim) with the library default eps 1e-5, whatever the
// config's layer_norm_eps says.
#pragma once

#include <string>

#include "../core/layer_norm.hpp"
#include "../core/linear.hpp"
#include "../io/config.hpp"
#include "../vision/image_batch.hpp"
#include "visual_abstractor_mlp.hpp"

namespace mplug_owl2 {

template <class T>
struct VisualAbstractorCrossOutput {
    std::string name;            // ...crossattention.output
    Linear<T> out_proj;          // [D, D], bias
    LayerNorm<T> norm2;          // eps 1e-5
    VisualAbstractorMLP<T> mlp;

    static constexpr double kNormEps = 1e-5;  // nn.LayerNorm's default

    void load(WeightLoader& w, const AbstractorConfig& c, const std::string& path) {
        name = path;
        const auto D = static_cast<std::size_t>(c.encoder_hidden_size);
        out_proj.load(w, path + ".out_proj", D, D, true);
        norm2.load(w, path + ".norm2", D, kNormEps);
        mlp.load(w, c, path + ".mlp");
    }

    // attention [N·Q, D], xn [N·Q, D] (the residual) -> [N·Q, D]
    Matrix<T> forward(const Matrix<T>& attention, const Matrix<T>& xn, std::size_t n_images,
                      const Hooks<T>& hooks) const {
        const Shape shape = image_batch_shape(n_images, rows_per_image(xn, n_images, name), xn.shape(1));
        // 1. h = xn + out_proj(attention)
        Matrix<T> h = out_proj.forward(attention, hooks, shape);
        h += xn;
        // 2. out = h + mlp(norm2(h))
        Matrix<T> out = mlp.forward(norm2.forward(h, hooks, shape), n_images, hooks);
        out += h;
        hooks.report(name, out, shape);
        return out;
    }
};

}  // namespace mplug_owl2
