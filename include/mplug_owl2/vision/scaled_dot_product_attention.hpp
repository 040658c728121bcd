// softmax(scale · q·kᵀ) · v without a mask: the attention both the vision
// encoder and the abstractor compute, per head of one image. q, k, v and out
// are row-major blocks inside wider matrices (leading dimensions ldq, ldk,
// ldv, ldo), so a head is read where the projection left it and written
// where the output projection expects it. This is the plain path;
// kernels/attention.hpp runs all heads at once, faster, behind the same
// multi_head_attention interface.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

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

// The heads of one row-major matrix: head h of row i starts at
// data + i·ld + h·head_step (head_step = head_dim when the heads are side by
// side, 3·head_dim for the vision encoder's fused [q, k, v] per head).
template <class P>
struct Heads {
    P* data;
    std::size_t ld, head_step;
    P* head(std::size_t h) const { return data + h * head_step; }
};

// Every head h: out_h [Lq, hd] = softmax(scale · q_h·k_hᵀ) · v_h, one head
// after the other.
template <class T>
void multi_head_attention(std::size_t num_heads, std::size_t Lq, std::size_t Lk, std::size_t hd, T scale,
                          Heads<const T> q, Heads<const T> k, Heads<const T> v, Heads<T> out) {
    std::vector<T> scores(Lq * Lk);
    for (std::size_t h = 0; h < num_heads; ++h)
        scaled_dot_product_attention<T>(Lq, Lk, hd, scale, q.head(h), q.ld, k.head(h), k.ld, v.head(h), v.ld,
                                        out.head(h), out.ld, scores.data());
}

}  // namespace mplug_owl2
