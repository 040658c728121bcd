// `model.visual_abstractor.encoder.layers.i`: MplugOwlVisualAbstractorLayer
// of visual_encoder.py, which is its cross-attention block and nothing else
// (no self-attention among the queries, no separate feed-forward).
#pragma once

#include <string>

#include "../io/config.hpp"
#include "../vision/image_batch.hpp"
#include "visual_abstractor_attention.hpp"

namespace mplug_owl2 {

template <class T>
struct VisualAbstractorLayer {
    std::string name;  // model.visual_abstractor.encoder.layers.i
    VisualAbstractorAttention<T> crossattention;

    void load(WeightLoader& w, const AbstractorConfig& c, const std::string& path) {
        name = path;
        crossattention.load(w, c, path + ".crossattention");
    }

    // x [N·Q, D], v [N·Lv, D] -> [N·Q, D]
    Matrix<T> forward(const Matrix<T>& x, const Matrix<T>& v, std::size_t n_images, const Hooks<T>& hooks) const {
        Matrix<T> out = crossattention.forward(x, v, n_images, hooks);
        hooks.report(name, out, image_batch_shape(n_images, rows_per_image(out, n_images, name), out.shape(1)));
        return out;
    }
};

}  // namespace mplug_owl2
