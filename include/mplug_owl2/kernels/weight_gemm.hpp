// y[L, N] = x[L, K] · Wᵀ + beta · y for a weight matrix W [N, K] (a Linear's,
// in the compute type), the product shaped by how many rows x has:
//   - L ≤ 8 (decoding): kernels/gemv.hpp streams W once;
//   - 9 ≤ L ≤ 512 (a prompt's prefill): kernels/prompt_gemm.hpp, x packed
//     once and W packed slice by slice as the threads reach it;
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
#include "prompt_gemm.hpp"

namespace mplug_owl2 {
namespace kernels {

// y[L, N] = x[L, K] · Wᵀ + beta · y (y with row stride ldy), by the rows of x as above.
template <class T>
void gemm_nt(const T* x, std::size_t L, const T* w, std::size_t N, std::size_t K, T beta, T* y, std::size_t ldy,
             ThreadPool& pool = thread_pool()) {
    if constexpr (std::is_same<T, float>::value) {
        if (gemv_applies(L)) return gemv_nt(x, L, w, N, K, beta, y, ldy, pool);
        if (prompt_gemm_applies(L, N, K)) return prompt_gemm_nt(x, L, w, N, K, beta, y, ldy, pool);
    }
    gemm<T>(Trans::No, Trans::Yes, L, N, K, T(1), x, K, w, K, beta, y, ldy);
}

}  // namespace kernels
}  // namespace mplug_owl2
