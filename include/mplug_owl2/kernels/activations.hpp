// activate_inplace of core/activations.hpp over the thread pool, tested
// against it. SiLU and quick_gelu (x·σ(c·x)) in float on an AVX-512 CPU are
// vectorised with kernels/avx512_exp.hpp; every other case applies the plain
// `activate` to each element, so its values are the plain path's exactly.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <type_traits>

#include "../core/activations.hpp"
#include "../core/parallel.hpp"
#include "avx512_exp.hpp"
#include "sgemm.hpp"

namespace mplug_owl2 {
namespace kernels {

// GCC 12 reports false -Wuninitialized / -Wmaybe-uninitialized warnings
// inside its own AVX-512 intrinsics.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace activation_detail {

// x[0, n) = x / (1 + e^(−c·x)) = x·σ(c·x)
__attribute__((target("avx512f"))) inline void sigmoid_gate_avx512(float c, float* x, std::size_t n) {
    const __m512 minus_c = _mm512_set1_ps(-c), one = _mm512_set1_ps(1.f);
    std::size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i);
        _mm512_storeu_ps(x + i, _mm512_div_ps(v, _mm512_add_ps(one, exp16(_mm512_mul_ps(minus_c, v)))));
    }
    const __mmask16 tail = static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(tail, x + i);
    _mm512_mask_storeu_ps(x + i, tail, _mm512_div_ps(v, _mm512_add_ps(one, exp16(_mm512_mul_ps(minus_c, v)))));
}

}  // namespace activation_detail

template <class T>
void activate_inplace(Activation a, Matrix<T>& x, ThreadPool& pool = thread_pool()) {
    T* data = x.data();
    // Chunks of whole cache lines, so that threads never share one.
    constexpr std::size_t kChunk = 1024;
    const std::size_t n = x.size(), chunks = (n + kChunk - 1) / kChunk;
    if constexpr (std::is_same<T, float>::value) {
        if (cpu_has_avx512f() && (a == Activation::SiLU || a == Activation::QuickGELU)) {
            const float c = a == Activation::SiLU ? 1.f : 1.702f;
            pool.parallel_for(chunks, [&](std::size_t c0, std::size_t c1) {
                const std::size_t i0 = c0 * kChunk, i1 = std::min(n, c1 * kChunk);
                activation_detail::sigmoid_gate_avx512(c, data + i0, i1 - i0);
            });
            return;
        }
    }
    pool.parallel_for(chunks, [&](std::size_t c0, std::size_t c1) {
        for (std::size_t i = c0 * kChunk; i < std::min(n, c1 * kChunk); ++i) data[i] = activate(a, data[i]);
    });
}

#pragma GCC diagnostic pop

}  // namespace kernels
}  // namespace mplug_owl2
