// `model.visual_abstractor.encoder`: MplugOwlVisualAbstractorEncoder of
// visual_encoder.py, num_hidden_layers abstractor layers, each reading the
// same vision features.
#pragma once

#include <string>
#include <vector>

#include "../io/config.hpp"
#include "../vision/image_batch.hpp"
#include "visual_abstractor_layer.hpp"

namespace mplug_owl2 {

template <class T>
struct VisualAbstractorEncoder {
    std::string name;  // model.visual_abstractor.encoder
    std::vector<VisualAbstractorLayer<T>> layers;

    void load(WeightLoader& w, const AbstractorConfig& c, const std::string& path) {
        name = path;
        layers.resize(static_cast<std::size_t>(c.num_hidden_layers));
        for (std::size_t i = 0; i < layers.size(); ++i) layers[i].load(w, c, path + ".layers." + std::to_string(i));
    }

    // x [N·Q, D] (queries), v [N·Lv, D] (vision features) -> [N·Q, D]
    Matrix<T> forward(const Matrix<T>& x, const Matrix<T>& v, std::size_t n_images, const Hooks<T>& hooks) const {
        Matrix<T> h = x;
        for (const auto& layer : layers) h = layer.forward(h, v, n_images, hooks);
        hooks.report(name, h, image_batch_shape(n_images, rows_per_image(h, n_images, name), h.shape(1)));
        return h;
    }
};

}  // namespace mplug_owl2
