// nn.LayerNorm over the last dimension: (x − mean) / sqrt(var + eps) · w + b,
// with the biased variance, as torch computes it.
#pragma once

#include <cmath>
#include <string>
#include <type_traits>

#include "../io/tensor_source.hpp"
#include "../kernels/norms.hpp"
#include "hooks.hpp"

namespace mplug_owl2 {

template <class T>
struct LayerNorm {
    std::string name;
    Vector<T> weight;  // [D]
    Vector<T> bias;    // [D]
    double eps = 1e-5;

    void load(WeightLoader& w, const std::string& path, std::size_t dim, double epsilon) {
        name = path;
        weight = w.vector<T>(path + ".weight", dim);
        bias = w.vector<T>(path + ".bias", dim);
        eps = epsilon;
    }

    // x [L, D] -> [L, D]; `shape` as for Linear::forward.
    Matrix<T> forward(const Matrix<T>& x, const Hooks<T>& hooks, const Shape& shape = {}) const {
        Matrix<T> y = apply(x);
        hooks.report(name, y, shape);
        return y;
    }

    // The normalisation without reporting: float rows through the AVX-512
    // kernel (kernels/norms.hpp, tested against apply_plain), else the plain loop.
    Matrix<T> apply(const Matrix<T>& x) const {
        if constexpr (std::is_same<T, float>::value) {
            if (kernels::norms_apply()) {
                const std::size_t D = weight.size();
                check_cols(x, D, name + " input");
                Matrix<T> y = Matrix<T>::from_shape(x.shape());
                kernels::layer_norm_rows(x.data(), x.shape(0), D, weight.data(), bias.data(), T(eps), y.data());
                return y;
            }
        }
        return apply_plain(x);
    }

    Matrix<T> apply_plain(const Matrix<T>& x) const {
        const std::size_t D = weight.size();
        check_cols(x, D, name + " input");
        Matrix<T> y = Matrix<T>::from_shape(x.shape());
        for (std::size_t r = 0; r < x.shape(0); ++r) {
            const T* xr = &x(r, 0);
            T* yr = &y(r, 0);
            T mean = 0;
            for (std::size_t i = 0; i < D; ++i) mean += xr[i];
            mean /= T(D);
            T var = 0;
            for (std::size_t i = 0; i < D; ++i) var += (xr[i] - mean) * (xr[i] - mean);
            var /= T(D);
            const T inv = T(1) / std::sqrt(var + T(eps));
            for (std::size_t i = 0; i < D; ++i) yr[i] = (xr[i] - mean) * inv * weight(i) + bias(i);
        }
        return y;
    }
};

}  // namespace mplug_owl2
