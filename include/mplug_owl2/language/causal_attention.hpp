// The core of the decoder's attention, after the projections and RoPE: for
// every query head h, softmax(q_h·k_gᵀ / √hd + causal mask) · v_g over the
// keys and values in the cache, g = h / (heads / kv_heads) (transformers'
// repeat_kv). The L queries sit at positions S−L .. S−1 of the S cached
// ones, so query i sees keys 0 .. S−L+i. This is the plain path, one head
// after the other; kernels/causal_attention.hpp computes the same behind the
// same interface, faster.
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

#include "../core/gemm.hpp"
#include "attention_softmax.hpp"
#include "kv_cache.hpp"

namespace mplug_owl2 {

// q [L, heads·hd] (rotated), the cache holding S ≥ L positions, the last L
// being the queries' -> out [L, heads·hd].
template <class T>
void causal_attention(const Matrix<T>& q, std::size_t num_heads, const typename KVCache<T>::Layer& cache,
                      Matrix<T>& out) {
    const std::size_t L = q.shape(0), S = cache.length(), hd = cache.head_dim;
    const std::size_t H = num_heads, group = num_heads / cache.heads;
    const std::size_t past = S - L;
    Matrix<T> scores = Matrix<T>::from_shape({L, S});
    std::vector<float> work(S);
    const T scale = T(std::sqrt(double(hd)));
    for (std::size_t h = 0; h < H; ++h) {
        const std::size_t g = h / group;
        // 1. scores = q_h · k_gᵀ   [L, S]
        gemm<T>(Trans::No, Trans::Yes, L, S, hd, T(1), q.data() + h * hd, H * hd, cache.keys_of(g), hd, T(0),
                scores.data(), S);
        // 2. / √hd, then the float32 softmax over the keys each query sees
        for (std::size_t i = 0; i < L; ++i) {
            T* s = &scores(i, 0);
            for (std::size_t j = 0; j < S; ++j) s[j] /= scale;
            attention_softmax(s, S, past + i + 1, s, work.data());
        }
        // 3. out_h = p · v_g   [L, hd]
        gemm<T>(Trans::No, Trans::No, L, hd, S, T(1), scores.data(), S, cache.values_of(g), hd, T(0),
                out.data() + h * hd, H * hd);
    }
}

}  // namespace mplug_owl2
