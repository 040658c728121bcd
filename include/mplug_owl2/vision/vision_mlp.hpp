// `model.vision_model.encoder.layers.i.mlp`: MplugOwlMLP of
// visual_encoder.py, fc2(act(fc1(x))) with act = config hidden_act
// (quick_gelu in the release, x·σ(1.702x)).
#pragma once

#include <string>

#include "../core/linear.hpp"
#include "../io/config.hpp"
#include "../kernels/activations.hpp"
#include "image_batch.hpp"

namespace mplug_owl2 {

template <class T>
struct VisionMLP {
    std::string name;                 // ...layers.i.mlp
    std::string activation_fn_name;   // ...layers.i.mlp.activation_fn, the official activation module
    Linear<T> fc1;                    // [I, D], bias
    Linear<T> fc2;                    // [D, I], bias
    Activation activation_fn = Activation::QuickGELU;

    void load(WeightLoader& w, const VisionConfig& c, const std::string& path) {
        name = path;
        activation_fn_name = path + ".activation_fn";
        const auto D = static_cast<std::size_t>(c.hidden_size), I = static_cast<std::size_t>(c.intermediate_size);
        fc1.load(w, path + ".fc1", D, I, true);
        fc2.load(w, path + ".fc2", I, D, true);
        activation_fn = activation_from_name(c.hidden_act);
    }

    // x [N·L, D] -> [N·L, D]
    Matrix<T> forward(const Matrix<T>& x, std::size_t n_images, const Hooks<T>& hooks) const {
        const std::size_t L = rows_per_image(x, n_images, name);
        const std::size_t I = fc1.out_features(), D = fc2.out_features();
        // 1. fc1   [N·L, I]
        Matrix<T> h = fc1.forward(x, hooks, image_batch_shape(n_images, L, I));
        // 2. activation
        kernels::activate_inplace(activation_fn, h);
        hooks.report(activation_fn_name, h, image_batch_shape(n_images, L, I));
        // 3. fc2   [N·L, D]
        const Shape shape = image_batch_shape(n_images, L, D);
        Matrix<T> y = fc2.forward(h, hooks, shape);
        hooks.report(name, y, shape);
        return y;
    }
};

}  // namespace mplug_owl2
