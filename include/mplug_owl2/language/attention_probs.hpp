// The decoder's attention with its probabilities kept, for hooks that ask
// for them (Hooks::request_attention_probs). It computes what
// causal_attention (language/causal_attention.hpp) computes, on the plain
// path, but keeps every head's p = softmax(q_h·k_gᵀ / √hd + causal mask)
// and reports it as `<attention module>.probs` [H, L, S] — the official
// attn_weights of output_attentions=True, batch dropped — before the values
// are weighed, so that a hook may also change it (e.g. cut the attention of
// text positions to the visual ones). Row i of head h covers all S keys;
// the keys after position S−L+i are masked and hold 0.
#pragma once

#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "../core/gemm.hpp"
#include "../core/hooks.hpp"
#include "attention_softmax.hpp"
#include "kv_cache.hpp"

namespace mplug_owl2 {

// q [L, heads·hd] (rotated), the cache holding S ≥ L positions, the last L
// being the queries' -> out [L, heads·hd]; reports `name` [heads, L, S].
template <class T>
void causal_attention_reporting_probs(const Matrix<T>& q, std::size_t num_heads,
                                      const typename KVCache<T>::Layer& cache, Matrix<T>& out,
                                      const std::string& name, const Hooks<T>& hooks) {
    const std::size_t L = q.shape(0), S = cache.length(), hd = cache.head_dim;
    const std::size_t H = num_heads, group = num_heads / cache.heads;
    const std::size_t past = S - L;
    Matrix<T> probs = Matrix<T>::from_shape({H * L, S});
    std::vector<float> work(S);
    const T scale = T(std::sqrt(double(hd)));
    // 1. every head: p_h = softmax(q_h · k_gᵀ / √hd + causal mask), the float32 softmax   [L, S]
    for (std::size_t h = 0; h < H; ++h) {
        T* p = &probs(h * L, 0);
        gemm<T>(Trans::No, Trans::Yes, L, S, hd, T(1), q.data() + h * hd, H * hd, cache.keys_of(h / group), hd, T(0),
                p, S);
        for (std::size_t i = 0; i < L; ++i) {
            T* s = p + i * S;
            for (std::size_t j = 0; j < S; ++j) s[j] /= scale;
            attention_softmax(s, S, past + i + 1, s, work.data());
        }
    }
    // 2. reported: hooks read p and may change it
    hooks.report(name, probs, {H, L, S});
    // 3. out_h = p_h · v_g   [L, hd]
    for (std::size_t h = 0; h < H; ++h)
        gemm<T>(Trans::No, Trans::No, L, hd, S, T(1), &probs(h * L, 0), S, cache.values_of(h / group), hd, T(0),
                out.data() + h * hd, H * hd);
}

}  // namespace mplug_owl2
