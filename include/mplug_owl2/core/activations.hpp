// The pointwise activations the official configs can name (transformers'
// ACT2FN entries used by mPLUG-Owl2 and LLaMA).
#pragma once

#include <cmath>
#include <string>

#include "error.hpp"
#include "tensor.hpp"

namespace mplug_owl2 {

enum class Activation { SiLU, GELU, GELUTanh, QuickGELU, ReLU };

inline Activation activation_from_name(const std::string& n) {
    if (n == "silu" || n == "swish") return Activation::SiLU;
    if (n == "gelu") return Activation::GELU;
    if (n == "gelu_new" || n == "gelu_pytorch_tanh") return Activation::GELUTanh;
    if (n == "quick_gelu") return Activation::QuickGELU;
    if (n == "relu") return Activation::ReLU;
    fail("hidden_act: unsupported activation ", n);
}

template <class T>
T silu(T x) {
    return x / (T(1) + std::exp(-x));
}

template <class T>
T activate(Activation a, T x) {
    switch (a) {
        case Activation::SiLU: return silu(x);
        // gelu(x) = x·Φ(x), the exact (erf) form.
        case Activation::GELU: return T(0.5) * x * (T(1) + std::erf(x / std::sqrt(T(2))));
        // tanh approximation ("gelu_new").
        case Activation::GELUTanh: {
            const T c = std::sqrt(T(2) / T(M_PI));
            return T(0.5) * x * (T(1) + std::tanh(c * (x + T(0.044715) * x * x * x)));
        }
        // quick_gelu(x) = x·σ(1.702x), CLIP's.
        case Activation::QuickGELU: return x / (T(1) + std::exp(T(-1.702) * x));
        case Activation::ReLU: return x > T(0) ? x : T(0);
    }
    return x;
}

template <class T>
void activate_inplace(Activation a, Matrix<T>& x) {
    for (auto& v : x) v = activate(a, v);
}

}  // namespace mplug_owl2
