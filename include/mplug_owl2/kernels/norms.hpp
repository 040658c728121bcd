// LayerNorm and RMSNorm of float rows on AVX-512 CPUs, the rows split over
// the pool's threads, tested against the plain loops of core/layer_norm.hpp
// and core/rms_norm.hpp. The plain loops add a row's D values one after the
// other, a chain of D dependent float additions (the compiler may not
// reorder them); here each sum is kept in 16 lanes × 4 vectors and added up
// at the end, as torch's vectorised kernels do. The vision encoder's six
// LayerNorms of 1025 × 1024 took about 1.5 ms each on one thread; now a
// tenth of that.
#pragma once

#include <immintrin.h>

#include <cmath>
#include <cstddef>

#include "../core/parallel.hpp"
#include "sgemm.hpp"

namespace mplug_owl2 {
namespace kernels {

namespace norm_detail {

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

// What a row sum adds per value: x, x², or (x − m)².
enum class Term { Value, Square, Deviation };

template <Term t>
__attribute__((target("avx512f"), always_inline)) inline __m512 term(__m512 v, __m512 m) {
    if (t == Term::Value) return v;
    if (t == Term::Square) return _mm512_mul_ps(v, v);
    const __m512 d = _mm512_sub_ps(v, m);
    return _mm512_mul_ps(d, d);
}

// Σ term(x[i]) over a row, 64 lanes at a time, then the lanes; lanes past D add 0.
template <Term t>
__attribute__((target("avx512f"), always_inline)) inline float row_sum(const float* x, std::size_t D, __m512 m) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    std::size_t i = 0;
    for (; i + 64 <= D; i += 64) {
        a0 = _mm512_add_ps(a0, term<t>(_mm512_loadu_ps(x + i), m));
        a1 = _mm512_add_ps(a1, term<t>(_mm512_loadu_ps(x + i + 16), m));
        a2 = _mm512_add_ps(a2, term<t>(_mm512_loadu_ps(x + i + 32), m));
        a3 = _mm512_add_ps(a3, term<t>(_mm512_loadu_ps(x + i + 48), m));
    }
    for (; i + 16 <= D; i += 16) a0 = _mm512_add_ps(a0, term<t>(_mm512_loadu_ps(x + i), m));
    if (i < D) {
        const __mmask16 k = static_cast<__mmask16>((1u << (D - i)) - 1);
        a1 = _mm512_add_ps(a1, _mm512_maskz_mov_ps(k, term<t>(_mm512_maskz_loadu_ps(k, x + i), m)));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

__attribute__((target("avx512f"))) inline void layer_norm_row(const float* x, std::size_t D, const float* w,
                                                              const float* b, float eps, float* y) {
    // 1. mean, then the biased variance around it (two passes, as the plain loop)
    const float mean = row_sum<Term::Value>(x, D, _mm512_setzero_ps()) / float(D);
    const __m512 vm = _mm512_set1_ps(mean);
    const float var = row_sum<Term::Deviation>(x, D, vm) / float(D);
    // 2. y = (x − mean) · inv · w + b, the last vector masked
    const __m512 inv = _mm512_set1_ps(1.f / std::sqrt(var + eps));
    for (std::size_t i = 0; i < D; i += 16) {
        const __mmask16 k = static_cast<__mmask16>(D - i >= 16 ? 0xFFFF : (1u << (D - i)) - 1);
        const __m512 n = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vm), inv);
        _mm512_mask_storeu_ps(y + i, k, _mm512_fmadd_ps(n, _mm512_maskz_loadu_ps(k, w + i), _mm512_maskz_loadu_ps(k, b + i)));
    }
}

__attribute__((target("avx512f"))) inline void rms_norm_row(const float* x, std::size_t D, const float* w, float eps,
                                                            float* y) {
    const float ms = row_sum<Term::Square>(x, D, _mm512_setzero_ps()) / float(D);
    const __m512 inv = _mm512_set1_ps(1.f / std::sqrt(ms + eps));
    for (std::size_t i = 0; i < D; i += 16) {  // y = w · (x · inv)
        const __mmask16 k = static_cast<__mmask16>(D - i >= 16 ? 0xFFFF : (1u << (D - i)) - 1);
        _mm512_mask_storeu_ps(y + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, w + i),
                                                      _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), inv)));
    }
}

#pragma GCC diagnostic pop

// Rows per task: enough work (~64 K values) to outweigh handing it out.
inline std::size_t rows_per_task(std::size_t D) { return std::max<std::size_t>(1, (std::size_t(1) << 16) / std::max<std::size_t>(D, 1)); }

}  // namespace norm_detail

// True when the kernels below run: an AVX-512 CPU.
inline bool norms_apply() { return cpu_has_avx512f(); }

// y[r] = LayerNorm(x[r]) for the L rows of D values (x, y contiguous [L, D]).
inline void layer_norm_rows(const float* x, std::size_t L, std::size_t D, const float* w, const float* b, float eps,
                            float* y, ThreadPool& pool = thread_pool()) {
    const std::size_t per = norm_detail::rows_per_task(D), tasks = sgemm_detail::ceil_div(L, per);
    pool.parallel_for(tasks, [&](std::size_t t0, std::size_t t1) {
        for (std::size_t r = t0 * per; r < std::min(L, t1 * per); ++r)
            norm_detail::layer_norm_row(x + r * D, D, w, b, eps, y + r * D);
    });
}

// y[r] = RMSNorm(x[r]) (LLaMA's: w · (x · inv)) for the L rows of D values.
inline void rms_norm_rows(const float* x, std::size_t L, std::size_t D, const float* w, float eps, float* y,
                          ThreadPool& pool = thread_pool()) {
    const std::size_t per = norm_detail::rows_per_task(D), tasks = sgemm_detail::ceil_div(L, per);
    pool.parallel_for(tasks, [&](std::size_t t0, std::size_t t1) {
        for (std::size_t r = t0 * per; r < std::min(L, t1 * per); ++r)
            norm_detail::rms_norm_row(x + r * D, D, w, eps, y + r * D);
    });
}

}  // namespace kernels
}  // namespace mplug_owl2
