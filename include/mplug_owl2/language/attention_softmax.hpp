// The softmax of the decoder's attention, in float32 whatever the model's
// dtype: the official LlamaAttention calls
// softmax(scores, dim=-1, dtype=torch.float32), meant to upcast fp16 scores,
// which also rounds float64 scores down to float32. The probabilities of a
// float64 run therefore carry float32 rounding, and a float64 port matches it
// only by doing the same arithmetic as torch's CPU kernel (1.13, AVX2), step
// for step:
//   - m = max over the row (masked entries are −inf after the cast);
//   - e_j = exp(x_j − m) with SLEEF's expf_u10 (the polynomial below, FMA);
//   - the sum of e in eight lanes (lane k adds e_k, e_k+8, ...), the lanes
//     then combined as ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7)); rows
//     shorter than eight are summed in order;
//   - p_j = e_j · (1 / sum).
// Any other exp or summation order differs by an ulp of float32 here and
// there, which shows as ~1e-7 relative error after the value product.
#pragma once

#include <cmath>
#include <cstddef>

namespace mplug_owl2 {

namespace softmax_detail {

// exp(d) for d <= 0, as SLEEF's expf_u10 computes it.
inline float expf_u10(float d) {
    if (d < -104.0f) return 0.0f;  // underflow (and the −inf of masked entries)
    const float q = std::nearbyint(d * 1.442695040888963407359924681001892137426645954152985934135449406931f);
    float s = std::fma(q, -0.693145751953125f, d);       // d − q·ln2, ln2 split in two parts
    s = std::fma(q, -1.428606765330187045e-06f, s);
    float u = 0.000198527617612853646278381f;
    u = std::fma(u, s, 0.00139304355252534151077271f);
    u = std::fma(u, s, 0.00833336077630519866943359f);
    u = std::fma(u, s, 0.0416664853692054748535156f);
    u = std::fma(u, s, 0.166666671633720397949219f);
    u = std::fma(u, s, 0.5f);
    u = 1.0f + std::fma(s * s, u, s);
    return std::ldexp(u, static_cast<int>(q));
}

// Sum of e[0..n) in the kernel's order.
inline float lane_sum(const float* e, std::size_t n) {
    if (n < 8) {
        float s = e[0];
        for (std::size_t j = 1; j < n; ++j) s += e[j];
        return s;
    }
    float lane[8];
    for (std::size_t k = 0; k < 8; ++k) lane[k] = e[k];
    for (std::size_t j = 8; j < n; ++j) lane[j % 8] += e[j];
    const float a0 = lane[0] + lane[4], a1 = lane[1] + lane[5], a2 = lane[2] + lane[6], a3 = lane[3] + lane[7];
    return (a0 + a2) + (a1 + a3);
}

}  // namespace softmax_detail

// p[0..n) = softmax(x[0..n)) in float32, entries from `visible` on masked
// (weight 0); `work` holds n floats.
template <class T>
void attention_softmax(const T* x, std::size_t n, std::size_t visible, T* p, float* work) {
    float m = static_cast<float>(x[0]);
    for (std::size_t j = 1; j < visible; ++j) m = std::fmax(m, static_cast<float>(x[j]));
    for (std::size_t j = 0; j < n; ++j)
        work[j] = j < visible ? softmax_detail::expf_u10(static_cast<float>(x[j]) - m) : 0.0f;
    const float r = 1.0f / softmax_detail::lane_sum(work, n);
    for (std::size_t j = 0; j < n; ++j) p[j] = static_cast<T>(work[j] * r);
}

}  // namespace mplug_owl2
