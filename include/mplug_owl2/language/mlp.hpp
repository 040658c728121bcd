// `model.layers.i.mlp`: transformers' `LlamaMLP`, the SwiGLU feed-forward
// down_proj(act(gate_proj(x)) * up_proj(x)), act = config hidden_act (silu
// in LLaMA-2). Shared by text and visual positions.
//
// With config pretraining_tp > 1 the official module splits the three
// weights into slices and concatenates or sums the partial products: the same
// sums in another order, so the plain products here compute it too.
#pragma once

#include <string>

#include "../core/activations.hpp"
#include "../core/linear.hpp"
#include "../io/config.hpp"
#include "../kernels/activations.hpp"

namespace mplug_owl2 {

template <class T>
struct MLP {
    std::string name;     // model.layers.i.mlp
    Linear<T> gate_proj;  // [I, D]
    Linear<T> up_proj;    // [I, D]
    Linear<T> down_proj;  // [D, I]
    Activation act_fn = Activation::SiLU;
    std::string act_fn_name;  // model.layers.i.mlp.act_fn, the official activation module

    void load(WeightLoader& w, const TextConfig& c, const std::string& path) {
        name = path;
        act_fn_name = path + ".act_fn";
        const auto D = static_cast<std::size_t>(c.hidden_size), I = static_cast<std::size_t>(c.intermediate_size);
        gate_proj.load(w, path + ".gate_proj", D, I, false);
        up_proj.load(w, path + ".up_proj", D, I, false);
        down_proj.load(w, path + ".down_proj", I, D, false);
        act_fn = activation_from_name(c.hidden_act);
    }

    // x [L, D] -> [L, D]
    Matrix<T> forward(const Matrix<T>& x, const Hooks<T>& hooks) const {
        // 1. gate = gate_proj(x), up = up_proj(x)   [L, I]
        Matrix<T> gate = gate_proj.forward(x, hooks);
        const Matrix<T> up = up_proj.forward(x, hooks);
        // 2. act(gate) * up
        kernels::activate_inplace(act_fn, gate);
        hooks.report(act_fn_name, gate);
        gate *= up;
        // 3. down_proj   [L, D]
        Matrix<T> y = down_proj.forward(gate, hooks);
        hooks.report(name, y);
        return y;
    }
};

}  // namespace mplug_owl2
