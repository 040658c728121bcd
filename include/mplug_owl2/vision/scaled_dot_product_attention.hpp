// softmax(scale · q·kᵀ) · v for one head of one image, without a mask: the
// attention both the vision encoder and the abstractor compute per head.
// q, k, v and out are row-major blocks inside wider matrices (leading
// dimensions ldq, ldk, ldv, ldo), so a head is read where the projection
// left it and written where the output projection expects it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "../core/gemm.hpp"

namespace mplug_owl2 {

// out [Lq, hd] = softmax(scale · q [Lq, hd] · k [Lk, hd]ᵀ) · v [Lk, hd];
// `scores` is scratch of Lq·Lk values.
template <class T>
void scaled_dot_product_attention(std::size_t Lq, std::size_t Lk, std::size_t hd, T scale, const T* q,
                                  std::size_t ldq, const T* k, std::size_t ldk, const T* v, std::size_t ldv, T* out,
                                  std::size_t ldo, T* scores) {
    // 1. scores = scale · q·kᵀ   [Lq, Lk]
    gemm<T>(Trans::No, Trans::Yes, Lq, Lk, hd, scale, q, ldq, k, ldk, T(0), scores, Lk);
    // 2. softmax over each row, shifted by the row maximum as torch does
    for (std::size_t i = 0; i < Lq; ++i) {
        T* s = scores + i * Lk;
        const T m = *std::max_element(s, s + Lk);
        T sum = 0;
        for (std::size_t j = 0; j < Lk; ++j) {
            s[j] = std::exp(s[j] - m);
            sum += s[j];
        }
        for (std::size_t j = 0; j < Lk; ++j) s[j] /= sum;
    }
    // 3. out = probabilities · v   [Lq, hd]
    gemm<T>(Trans::No, Trans::No, Lq, hd, Lk, T(1), scores, Lk, v, ldv, T(0), out, ldo);
}

}  // namespace mplug_owl2
