// LLaMA's RMSNorm: w · x / sqrt(mean(x²) + eps).
#pragma once

#include <cmath>
#include <string>
#include <type_traits>

#include "../io/tensor_source.hpp"
#include "../kernels/norms.hpp"
#include "hooks.hpp"

namespace mplug_owl2 {

template <class T>
struct RMSNorm {
    std::string name;
    Vector<T> weight;  // [D]
    double eps = 1e-6;

    void load(WeightLoader& w, const std::string& path, std::size_t dim, double epsilon) {
        name = path;
        weight = w.vector<T>(path + ".weight", dim);
        eps = epsilon;
    }

    // Normalises without reporting (the multiway wrapper reports the merged
    // result): float rows through the AVX-512 kernel (kernels/norms.hpp,
    // tested against apply_plain), else the plain loop.
    Matrix<T> apply(const Matrix<T>& x) const {
        if constexpr (std::is_same<T, float>::value) {
            if (kernels::norms_apply()) {
                const std::size_t D = weight.size();
                check_cols(x, D, name + " input");
                Matrix<T> y = Matrix<T>::from_shape(x.shape());
                kernels::rms_norm_rows(x.data(), x.shape(0), D, weight.data(), T(eps), y.data());
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
            T ms = 0;
            for (std::size_t i = 0; i < D; ++i) ms += xr[i] * xr[i];
            ms /= T(D);
            const T inv = T(1) / std::sqrt(ms + T(eps));
            for (std::size_t i = 0; i < D; ++i) yr[i] = weight(i) * (xr[i] * inv);
        }
        return y;
    }

    Matrix<T> forward(const Matrix<T>& x, const Hooks<T>& hooks) const {
        Matrix<T> y = apply(x);
        hooks.report(name, y);
        return y;
    }
};

}  // namespace mplug_owl2
