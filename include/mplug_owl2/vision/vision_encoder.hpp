// `model.vision_model.encoder`: MplugOwlVisionEncoder of visual_encoder.py,
// the stack of num_hidden_layers encoder layers.
#pragma once

#include <string>
#include <vector>

#include "../io/config.hpp"
#include "image_batch.hpp"
#include "vision_encoder_layer.hpp"

namespace mplug_owl2 {

template <class T>
struct VisionEncoder {
    std::string name;  // model.vision_model.encoder
    std::vector<VisionEncoderLayer<T>> layers;

    void load(WeightLoader& w, const VisionConfig& c, const std::string& path) {
        name = path;
        layers.resize(static_cast<std::size_t>(c.num_hidden_layers));
        for (std::size_t i = 0; i < layers.size(); ++i) layers[i].load(w, c, path + ".layers." + std::to_string(i));
    }

    // x [N·L, D] -> [N·L, D]
    Matrix<T> forward(const Matrix<T>& x, std::size_t n_images, const Hooks<T>& hooks) const {
        Matrix<T> h = x;
        for (const auto& layer : layers) h = layer.forward(h, n_images, hooks);
        hooks.report(name, h, image_batch_shape(n_images, rows_per_image(h, n_images, name), h.shape(1)));
        return h;
    }
};

}  // namespace mplug_owl2
