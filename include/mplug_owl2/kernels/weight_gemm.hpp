// y[L, N] = x[L, K] · Wᵀ + beta · y for a weight matrix W [N, K] (a Linear's,
// in the compute type), the product shaped by how many rows x has:
//   - L ≤ 8 (decoding): kernels/gemv.hpp streams W once;
//   - 9 ≤ L ≤ 512 (a prompt's prefill): kernels/prompt_gemm.hpp, x packed
//     once and W packed slice by slice as the threads reach it;
//   - otherwise (many rows, double, other CPUs): gemm as it stands.
// With a bias (a Linear's), y = x · Wᵀ + bias + beta · y.
// Tested against the plain gemm.
#pragma once

#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <vector>

#include "../core/gemm.hpp"
#include "../core/parallel.hpp"
#include "gemv.hpp"
#include "prompt_gemm.hpp"

namespace mplug_owl2 {
namespace kernels {

// y = beta · y + bias on every row (bias may be null: y unchanged); returns
// the beta that the product is then to be added with (1 when bias was added).
template <class T>
T add_bias_rows(const T* bias, std::size_t L, std::size_t N, T beta, T* y, std::size_t ldy) {
    if (!bias) return beta;
    for (std::size_t l = 0; l < L; ++l)
        for (std::size_t j = 0; j < N; ++j) y[l * ldy + j] = (beta == T(0) ? T(0) : beta * y[l * ldy + j]) + bias[j];
    return T(1);
}

// y[L, N] = x[L, K] · Wᵀ + beta · y (+ bias[N] on every row when given; y
// with row stride ldy), by the rows of x as above. The prompt product and
// the AVX-512 sgemm add the bias as they store their tiles; the other paths
// write it into y first.
template <class T>
void gemm_nt(const T* x, std::size_t L, const T* w, std::size_t N, std::size_t K, T beta, T* y, std::size_t ldy,
             ThreadPool& pool = thread_pool(), const T* bias = nullptr) {
    if constexpr (std::is_same<T, float>::value) {
        if (gemv_applies(L)) return gemv_nt(x, L, w, N, K, add_bias_rows(bias, L, N, beta, y, ldy), y, ldy, pool);
        if (prompt_gemm_applies(L, N, K)) return prompt_gemm_nt(x, L, w, N, K, beta, y, ldy, pool, bias);
        if (sgemm_is_faster(L, N, K)) return sgemm(false, true, L, N, K, 1.f, x, K, w, K, beta, y, ldy, &pool, bias);
    }
    gemm<T>(Trans::No, Trans::Yes, L, N, K, T(1), x, K, w, K, add_bias_rows(bias, L, N, beta, y, ldy), y, ldy);
}

}  // namespace kernels
}  // namespace mplug_owl2
