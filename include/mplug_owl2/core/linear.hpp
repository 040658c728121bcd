// nn.Linear: y = x·Wᵀ + b with W stored [out, in] as in the checkpoint.
// A float Linear's weight can instead be packed once in the order of the
// fast products (pack(); kernels/packed_weights.hpp): prompt products up to
// 20% faster with the same sums in the same order (decoding's few-row
// products add in another order); dense_weight() then gives W back.
#pragma once

#include <string>
#include <type_traits>

#include "../io/tensor_source.hpp"
#include "../kernels/half_gemm.hpp"
#include "../kernels/packed_gemm.hpp"
#include "../kernels/weight_gemm.hpp"
#include "gemm.hpp"
#include "half_matrix.hpp"
#include "hooks.hpp"

namespace mplug_owl2 {

template <class T>
struct Linear {
    std::string name;  // official module path, e.g. "model.layers.0.self_attn.q_proj"
    Matrix<T> weight;         // [out, in]
    Vector<T> bias;           // [out], empty when the module has no bias
    HalfMatrix weight_half;   // `weight` kept in its stored fp16/bf16 instead (then `weight` is empty)
    kernels::PackedWeights weight_packed;  // `weight` packed by pack() (float only; then `weight` is empty)

    std::size_t in_features() const {
        return !weight_packed.empty() ? weight_packed.cols() : weight_half.empty() ? weight.shape(1) : weight_half.cols;
    }
    std::size_t out_features() const {
        return !weight_packed.empty() ? weight_packed.rows() : weight_half.empty() ? weight.shape(0) : weight_half.rows;
    }
    bool has_bias() const { return bias.size() != 0; }
    bool packed() const { return !weight_packed.empty(); }

    // Float weights held in `weight` move to `weight_packed` (its memory
    // freed); others (double, fp16/bf16, already packed) stay as they are.
    // Returns whether the weight was packed.
    bool pack() {
        if constexpr (std::is_same<T, float>::value) {
            if (packed() || !weight_half.empty()) return false;
            weight_packed = kernels::PackedWeights::pack(weight.data(), weight.shape(0), weight.shape(1));
            weight = Matrix<T>();
            return true;
        }
        return false;
    }

    // W [out, in] in T, whichever way it is held.
    Matrix<T> dense_weight() const {
        const std::size_t N = out_features(), K = in_features();
        if (packed()) {
            Matrix<float> w = Matrix<float>::from_shape({N, K});
            weight_packed.unpack_rows(0, N, w.data());
            return xt::cast<T>(w);
        }
        if (weight_half.empty()) return weight;
        Matrix<T> w = Matrix<T>::from_shape({N, K});
        for (std::size_t r = 0; r < N; ++r) weight_half.row(r, 0, K, w.data() + r * K);
        return w;
    }

    void load(WeightLoader& w, const std::string& path, std::size_t in, std::size_t out, bool with_bias) {
        name = path;
        if (w.keeps_half(path + ".weight")) {
            weight_half = HalfMatrix::load(w, path + ".weight", out, in);
            weight = Matrix<T>();
        } else {
            weight = w.matrix<T>(path + ".weight", out, in);
            weight_half = HalfMatrix();
        }
        bias = with_bias ? w.vector<T>(path + ".bias", out) : Vector<T>();
    }

    // x [L, in] -> [L, out]; `shape` is the official shape to report it
    // with when it is not [L, out] (e.g. [images, tokens, out]).
    Matrix<T> forward(const Matrix<T>& x, const Hooks<T>& hooks, const Shape& shape = {}) const {
        Matrix<T> y = project(x);
        hooks.report(name, y, shape);
        return y;
    }

    // The product alone, without reporting (for callers that report the
    // combined result of several projections themselves).
    Matrix<T> project(const Matrix<T>& x) const {
        check_cols(x, in_features(), name + " input");
        Matrix<T> y = Matrix<T>::from_shape({x.shape(0), out_features()});
        const T* b = has_bias() ? bias.data() : nullptr;  // y = x·Wᵀ + b
        if constexpr (std::is_same<T, float>::value)
            if (packed()) {
                kernels::packed_gemm_nt(x.data(), x.shape(0), weight_packed, 0.f, y.data(), y.shape(1), thread_pool(), b);
                return y;
            }
        if (!weight_half.empty())
            kernels::gemm_half_nt<T>(x.data(), x.shape(0), weight_half, T(0), y.data(), y.shape(1), thread_pool(), b);
        else
            kernels::gemm_nt<T>(x.data(), x.shape(0), weight.data(), out_features(), in_features(), T(0), y.data(),
                                y.shape(1), thread_pool(), b);
        return y;
    }
};

}  // namespace mplug_owl2
