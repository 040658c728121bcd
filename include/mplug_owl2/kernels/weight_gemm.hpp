// y[L, N] = x[L, K] · Wᵀ + beta · y for a weight matrix W [N, K] (a Linear's,
// in the compute type), the product shaped by how many rows x has:
//   - L ≤ 8 (decoding): kernels/gemv.hpp streams W once;
//   - 16 ≤ L ≤ 512 (a prompt's prefill): computed transposed, yᵀ = W · xᵀ,
//     then added into y. A blocked GEMM packs its right operand whole before
//     it multiplies; packing x (small) instead of W (the weights: 64 to 180
//     MB for the decoder) saves a write and a read of W, which for so few
//     rows costs as much as the multiplication itself;
//   - otherwise (many rows, double, other CPUs): gemm as it stands.
// Tested against the plain gemm.
#pragma once

#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <vector>

#include "../core/gemm.hpp"
#include "../core/parallel.hpp"
#include "gemv.hpp"

namespace mplug_owl2 {
namespace kernels {

// Most rows of x for which the transposed product is taken.
constexpr std::size_t kTransposedMaxRows = 512;

// True when the product of L rows with W [N, K] is computed transposed.
inline bool transposed_applies(std::size_t L, std::size_t N, std::size_t K) {
    return L <= kTransposedMaxRows && L > kGemvMaxRows && sgemm_is_faster(N, L, K);
}

// y[L, N] = ct[N, L]ᵀ + beta · y, by blocks of columns over the pool.
inline void add_transposed(const float* ct, std::size_t L, std::size_t N, float beta, float* y, std::size_t ldy,
                           ThreadPool& pool = thread_pool()) {
    constexpr std::size_t kBlock = 64;  // columns of y: a block of ct (64·L floats) stays in L1/L2
    pool.parallel_for((N + kBlock - 1) / kBlock, [&](std::size_t b0, std::size_t b1) {
        for (std::size_t j0 = b0 * kBlock; j0 < std::min(N, b1 * kBlock); j0 += kBlock) {
            const std::size_t j1 = std::min(N, j0 + kBlock);
            for (std::size_t l = 0; l < L; ++l) {
                float* yl = y + l * ldy;
                if (beta == 0.f)
                    for (std::size_t j = j0; j < j1; ++j) yl[j] = ct[j * L + l];
                else
                    for (std::size_t j = j0; j < j1; ++j) yl[j] = ct[j * L + l] + beta * yl[j];
            }
        }
    });
}

// y[L, N] = x[L, K] · Wᵀ + beta · y (y with row stride ldy), by the rows of x as above.
template <class T>
void gemm_nt(const T* x, std::size_t L, const T* w, std::size_t N, std::size_t K, T beta, T* y, std::size_t ldy,
             ThreadPool& pool = thread_pool()) {
    if constexpr (std::is_same<T, float>::value) {
        if (gemv_applies(L)) return gemv_nt(x, L, w, N, K, beta, y, ldy, pool);
        if (transposed_applies(L, N, K)) {
            thread_local std::vector<float> ct;
            ct.resize(N * L);
            // yᵀ [N, L] = W · xᵀ
            gemm<float>(Trans::No, Trans::Yes, N, L, K, 1.f, w, K, x, K, 0.f, ct.data(), L);
            return add_transposed(ct.data(), L, N, beta, y, ldy, pool);
        }
    }
    gemm<T>(Trans::No, Trans::Yes, L, N, K, T(1), x, K, w, K, beta, y, ldy);
}

}  // namespace kernels
}  // namespace mplug_owl2
