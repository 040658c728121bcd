// All heads of unmasked attention at once, tested against the plain per-head
// path (vision/scaled_dot_product_attention.hpp). In float on an AVX-512
// CPU the heads are spread over the thread pool, each head running on one
// thread with kernels/sgemm.hpp:
//   - k_h and v_h are packed once per head;
//   - the queries go in blocks of 112 rows, so that a block's scores
//     (112 × Lk) stay in the core's cache between q·kᵀ, the softmax and p·v;
//   - the softmax is vectorised (kernels/avx512_exp.hpp).
// Elsewhere (double, other CPUs) it is the plain path.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <limits>
#include <type_traits>

#include "../core/parallel.hpp"
#include "../vision/scaled_dot_product_attention.hpp"
#include "avx512_exp.hpp"
#include "sgemm.hpp"

namespace mplug_owl2 {
namespace kernels {

// GCC 12 reports false -Wuninitialized / -Wmaybe-uninitialized warnings
// inside its own AVX-512 intrinsics.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace attention_detail {

constexpr std::size_t kQueryBlock = 8 * sgemm_detail::MR;

// The maximum and the sum of 16 lanes.
__attribute__((target("avx512f"))) inline float lanes_max(__m512 v) {
    alignas(64) float x[16];
    _mm512_store_ps(x, v);
    return *std::max_element(x, x + 16);
}
__attribute__((target("avx512f"))) inline float lanes_sum(__m512 v) {
    alignas(64) float x[16];
    _mm512_store_ps(x, v);
    float s = 0.f;
    for (float e : x) s += e;
    return s;
}

// s[0, n) = softmax(s[0, n)), shifted by the maximum.
__attribute__((target("avx512f"))) inline void softmax_row(float* s, std::size_t n) {
    const std::size_t full = n / 16 * 16;
    const __mmask16 tail = static_cast<__mmask16>((1u << (n - full)) - 1);
    __m512 vmax = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    for (std::size_t j = 0; j < full; j += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(s + j));
    vmax = _mm512_mask_max_ps(vmax, tail, vmax, _mm512_maskz_loadu_ps(tail, s + full));
    const __m512 m = _mm512_set1_ps(lanes_max(vmax));
    __m512 vsum = _mm512_setzero_ps();
    for (std::size_t j = 0; j < full; j += 16) {
        const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(s + j), m));
        _mm512_storeu_ps(s + j, e);
        vsum = _mm512_add_ps(vsum, e);
    }
    const __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, s + full), m));
    _mm512_mask_storeu_ps(s + full, tail, e);
    vsum = _mm512_mask_add_ps(vsum, tail, vsum, e);
    const __m512 inv = _mm512_set1_ps(1.f / lanes_sum(vsum));
    for (std::size_t j = 0; j < full; j += 16) _mm512_storeu_ps(s + j, _mm512_mul_ps(_mm512_loadu_ps(s + j), inv));
    _mm512_mask_storeu_ps(s + full, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, s + full), inv));
}

// The heads are taken one at a time by whichever thread of `pool` is free.
inline void attention_avx512(std::size_t num_heads, std::size_t Lq, std::size_t Lk, std::size_t hd, float scale,
                             Heads<const float> q, Heads<const float> k, Heads<const float> v, Heads<float> out,
                             ThreadPool& pool) {
    std::atomic<std::size_t> next{0};
    pool.parallel_for(pool.size(), [&](std::size_t, std::size_t) {
        thread_local PackedB kp, vp;
        thread_local sgemm_detail::Buffer scores;
        for (std::size_t h; (h = next.fetch_add(1)) < num_heads;) {
            kp.pack(true, hd, Lk, k.head(h), k.ld);   // k_hᵀ [hd, Lk]
            vp.pack(false, Lk, hd, v.head(h), v.ld);  // v_h [Lk, hd]
            for (std::size_t i0 = 0; i0 < Lq; i0 += kQueryBlock) {
                const std::size_t rows = std::min(kQueryBlock, Lq - i0);
                float* s = scores.get(kQueryBlock * Lk);
                // 1. s = scale · q·kᵀ   [rows, Lk]
                gemm_packed(false, rows, scale, q.head(h) + i0 * q.ld, q.ld, kp, 0, kp.panels(), 0.f, s, Lk);
                // 2. softmax over each row
                for (std::size_t r = 0; r < rows; ++r) softmax_row(s + r * Lk, Lk);
                // 3. out = s · v   [rows, hd]
                gemm_packed(false, rows, 1.f, s, Lk, vp, 0, vp.panels(), 0.f, out.head(h) + i0 * out.ld, out.ld);
            }
        }
    });
}

}  // namespace attention_detail

// multi_head_attention of vision/scaled_dot_product_attention.hpp, fast.
template <class T>
void multi_head_attention(std::size_t num_heads, std::size_t Lq, std::size_t Lk, std::size_t hd, T scale,
                          Heads<const T> q, Heads<const T> k, Heads<const T> v, Heads<T> out,
                          ThreadPool& pool = thread_pool()) {
    if constexpr (std::is_same<T, float>::value) {
        if (cpu_has_avx512f() && Lk > 0)
            return attention_detail::attention_avx512(num_heads, Lq, Lk, hd, scale, q, k, v, out, pool);
    }
    mplug_owl2::multi_head_attention<T>(num_heads, Lq, Lk, hd, scale, q, k, v, out);
}

#pragma GCC diagnostic pop

}  // namespace kernels
}  // namespace mplug_owl2
