// causal_attention of language/causal_attention.hpp, fast, tested against it.
// In float on an AVX-512 CPU the query heads are spread over the thread pool
// (taken one at a time by whichever thread is free), each head on one
// thread:
//   - many queries (prefill): q_h·k_gᵀ and p·v_g with kernels/sgemm.hpp on
//     the calling thread; the cache's per-head blocks are read in place;
//   - few queries (decoding): each query's dot products with the keys it
//     sees and the weighted sum of their values, vectorised, reading the
//     head's contiguous keys and values once.
// The softmax is the plain path's (float32, torch's order), so only the
// products' summation order differs from it. Elsewhere (double, other CPUs)
// it is the plain path.
#pragma once

#include <immintrin.h>

#include <atomic>
#include <cmath>
#include <cstddef>
#include <type_traits>
#include <vector>

#include "../core/parallel.hpp"
#include "../language/causal_attention.hpp"
#include "sgemm.hpp"

namespace mplug_owl2 {
namespace kernels {

namespace causal_attention_detail {

// Queries from which a head's products go through sgemm.
constexpr std::size_t kGemmRows = 16;

// GCC 12 reports false -W(maybe-)uninitialized warnings inside its own
// AVX-512 reductions.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

// a[0, n) · b[0, n)
__attribute__((target("avx512f"))) inline float dot(const float* a, const float* b, std::size_t n) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    std::size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
    }
    for (; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (n - i)) - 1);
        acc0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

// y[0, n) += a · x[0, n)
__attribute__((target("avx512f"))) inline void axpy(float a, const float* x, float* y, std::size_t n) {
    const __m512 va = _mm512_set1_ps(a);
    for (std::size_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m,
                              _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
}

#pragma GCC diagnostic pop

// Head h on the calling thread; s holds L·S floats, work S.
inline void head_avx512(std::size_t h, const Matrix<float>& q, std::size_t num_heads,
                        const KVCache<float>::Layer& cache, Matrix<float>& out, float* s, float* work) {
    const std::size_t L = q.shape(0), S = cache.length(), hd = cache.head_dim, ld = num_heads * hd;
    const std::size_t past = S - L, g = h / (num_heads / cache.heads);
    const float scale = float(std::sqrt(double(hd)));
    const float* qh = q.data() + h * hd;
    const float* K = cache.keys_of(g);
    const float* V = cache.values_of(g);
    float* oh = out.data() + h * hd;
    if (L >= kGemmRows) {
        // 1. scores = q_h · k_gᵀ   [L, S]
        sgemm(false, true, L, S, hd, 1.f, qh, ld, K, hd, 0.f, s, S);
        // 2. / √hd, softmax over the visible keys
        for (std::size_t i = 0; i < L; ++i) {
            float* si = s + i * S;
            for (std::size_t j = 0; j < S; ++j) si[j] /= scale;
            attention_softmax(si, S, past + i + 1, si, work);
        }
        // 3. out_h = p · v_g   [L, hd]
        sgemm(false, false, L, hd, S, 1.f, s, S, V, hd, 0.f, oh, ld);
        return;
    }
    for (std::size_t i = 0; i < L; ++i) {
        const std::size_t visible = past + i + 1;
        // 1. scores of the visible keys (the softmax reads no other)
        for (std::size_t j = 0; j < visible; ++j) s[j] = dot(qh + i * ld, K + j * hd, hd) / scale;
        // 2. softmax
        attention_softmax(s, S, visible, s, work);
        // 3. out_h[i] = Σ_j p_j · v_g[j]
        float* o = oh + i * ld;
        std::fill(o, o + hd, 0.f);
        for (std::size_t j = 0; j < visible; ++j) axpy(s[j], V + j * hd, o, hd);
    }
}

}  // namespace causal_attention_detail

template <class T>
void causal_attention(const Matrix<T>& q, std::size_t num_heads, const typename KVCache<T>::Layer& cache,
                      Matrix<T>& out, ThreadPool& pool = thread_pool()) {
    if constexpr (std::is_same<T, float>::value) {
        if (cpu_has_avx512f() && q.shape(0) > 0) {
            const std::size_t L = q.shape(0), S = cache.length();
            std::atomic<std::size_t> next{0};
            pool.parallel_for(pool.size(), [&](std::size_t, std::size_t) {
                thread_local std::vector<float> s, work;
                s.resize(L * S);
                work.resize(S);
                for (std::size_t h; (h = next.fetch_add(1)) < num_heads;)
                    causal_attention_detail::head_avx512(h, q, num_heads, cache, out, s.data(), work.data());
            });
            return;
        }
    }
    mplug_owl2::causal_attention<T>(q, num_heads, cache, out);
}

}  // namespace kernels
}  // namespace mplug_owl2
