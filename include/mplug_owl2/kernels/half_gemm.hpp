// Fast kernels for products with half-precision weights, tested against the
// plain path (convert the whole matrix, then gemm):
//   - few rows (decoding): kernels/gemv.hpp, each weight converted in
//     registers while it streams from memory (AVX-512 CPUs); memory
//     bandwidth is the limit.
//   - a prompt's rows (9 to 512, AVX-512): kernels/prompt_gemm.hpp, the
//     weights converted to float slice by slice as they are packed;
//   - otherwise: blocks of weight rows are converted into a float buffer,
//     each multiplied as float weights (kernels/weight_gemm.hpp).
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../core/gemm.hpp"
#include "../core/half_matrix.hpp"
#include "../core/parallel.hpp"
#include "gemv.hpp"
#include "sgemm.hpp"
#include "prompt_gemm.hpp"
#include "weight_gemm.hpp"

namespace mplug_owl2 {
namespace kernels {

namespace detail {

// GCC 12 reports a false -Wmaybe-uninitialized inside its own AVX-512
// intrinsics.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// 16 halves at p -> 16 floats.
__attribute__((target("avx512f,avx512bw"))) inline __m512 load16(DType dt, const std::uint8_t* p) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    if (dt == DType::F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

__attribute__((target("avx512f,avx512bw"))) inline void to_float_avx512(DType dt, const std::uint8_t* src,
                                                                         std::size_t n, float* dst) {
    std::size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, load16(dt, src + 2 * i));
    if (i < n) convert_elements<float>(dt, src + 2 * i, n - i, dst + i);
}

#pragma GCC diagnostic pop

}  // namespace detail

// n stored halves -> float.
inline void halves_to_float(DType dt, const std::uint8_t* src, std::size_t n, float* dst) {
    if (cpu_has_avx512())
        detail::to_float_avx512(dt, src, n, dst);
    else
        convert_elements<float>(dt, src, n, dst);
}

// y[L, N] = x[L, K] · Wᵀ + beta · y (+ bias[N] on every row when given), W
// half [N, K], y with row stride ldy.
template <class T>
void gemm_half_nt(const T* x, std::size_t L, const HalfMatrix& w, T beta, T* y, std::size_t ldy,
                  ThreadPool& pool = thread_pool(), const T* bias = nullptr) {
    const std::size_t N = w.rows, K = w.cols;
    if (L == 0 || N == 0) return;
    if constexpr (std::is_same<T, float>::value) {
        if (gemv_applies(L)) return gemv_nt(x, L, w, add_bias_rows(bias, L, N, beta, y, ldy), y, ldy, pool);
        if (prompt_gemm_applies(L, N, K)) return prompt_gemm_half_nt(x, L, w, beta, y, ldy, pool, bias);
    }
    // Blocks of 1024 weight rows (or of 1M weights when rows are short)
    // converted to T, each multiplied into its columns of y: enough rows for
    // the GEMM to split them over the threads without packing x again.
    const std::size_t block = std::max<std::size_t>(1024, (std::size_t(1) << 20) / std::max<std::size_t>(K, 1));
    thread_local std::vector<T> storage;  // the calling thread's, reused from call to call
    storage.resize(std::min(block, N) * K);
    T* const buf = storage.data();
    for (std::size_t j0 = 0; j0 < N; j0 += block) {
        const std::size_t nb = std::min(block, N - j0);
        pool.parallel_for(nb, [&](std::size_t r0, std::size_t r1) {
            for (std::size_t r = r0; r < r1; ++r) {
                const std::uint8_t* src = w.data + 2 * (j0 + r) * K;
                if constexpr (std::is_same<T, float>::value)
                    halves_to_float(w.dtype, src, K, buf + r * K);
                else
                    convert_elements<T>(w.dtype, src, K, buf + r * K);
            }
        });
        gemm_nt<T>(x, L, buf, nb, K, beta, y + j0, ldy, pool, bias ? bias + j0 : nullptr);
    }
}

}  // namespace kernels
}  // namespace mplug_owl2
