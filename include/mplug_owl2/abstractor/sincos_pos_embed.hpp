// The abstractor's fixed sin-cos position tables (get_1d_sincos_pos_embed_
// from_grid and get_2d_sincos_pos_embed of visual_encoder.py, after MAE).
// The official code computes them with numpy in float32 and registers them
// as buffers, so a checkpoint normally carries them (`q_pos_embed`,
// `k_pos_embed`) and the model loads them from there. These functions
// rebuild them for a checkpoint without them, rounding as numpy's float32
// arithmetic does at every step that matters:
//   ω_k = 1 / 10000^(k / (E/2)), the quotient, the power and the reciprocal
//         each rounded to float32;
//   the angle p·ω_k rounded to float32;
//   sin and cos of that float32 angle, rounded to float32.
// numpy's own float32 power and sin/cos are vectorised approximations that
// can differ from the correctly rounded values used here by an ulp (the
// power's ulp then grows with the position p), so a rebuilt table agrees
// with a stored one to float32 rounding of these steps, not bit for bit.
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

#include "../core/tensor.hpp"

namespace mplug_owl2 {

// Rows [sin(p·ω_0..ω_{E/2−1}) | cos(p·ω_0..ω_{E/2−1})] for each p in pos   [M, E]
inline Matrix<float> get_1d_sincos_pos_embed_from_grid(std::size_t embed_dim, const std::vector<float>& pos) {
    if (embed_dim % 2 != 0) fail("sin-cos position table: embed_dim ", embed_dim, " must be even");
    const std::size_t half = embed_dim / 2;
    // 1. ω_k = 1 / 10000^(k / (E/2)), in float32
    std::vector<float> omega(half);
    for (std::size_t k = 0; k < half; ++k) {
        const float e = static_cast<float>(k) / static_cast<float>(half);
        const float p = static_cast<float>(std::pow(10000.0, double(e)));
        omega[k] = 1.0f / p;
    }
    // 2. angle p·ω_k in float32; sin in the first half, cos in the second
    Matrix<float> emb = Matrix<float>::from_shape({pos.size(), embed_dim});
    for (std::size_t m = 0; m < pos.size(); ++m)
        for (std::size_t k = 0; k < half; ++k) {
            const float angle = pos[m] * omega[k];
            emb(m, k) = static_cast<float>(std::sin(double(angle)));
            emb(m, half + k) = static_cast<float>(std::cos(double(angle)));
        }
    return emb;
}

// The query table: positions 0 .. n−1   [n, E]
inline Matrix<float> get_1d_sincos_pos_embed(std::size_t embed_dim, std::size_t n) {
    std::vector<float> pos(n);
    for (std::size_t i = 0; i < n; ++i) pos[i] = static_cast<float>(i);
    return get_1d_sincos_pos_embed_from_grid(embed_dim, pos);
}

// The patch table over a g×g grid in row-major order: row y·g + x is
// [1-D table of x | 1-D table of y], each E/2 wide (the official code calls
// the first half emb_h although it encodes the column x); with `cls_token`
// an all-zero row comes first   [(1 +) g², E]
inline Matrix<float> get_2d_sincos_pos_embed(std::size_t embed_dim, std::size_t grid_size, bool cls_token) {
    if (embed_dim % 4 != 0) fail("sin-cos position table: embed_dim ", embed_dim, " must be a multiple of 4");
    const std::size_t G = grid_size * grid_size, half = embed_dim / 2, cls = cls_token ? 1 : 0;
    std::vector<float> xs(G), ys(G);
    for (std::size_t i = 0; i < G; ++i) {
        xs[i] = static_cast<float>(i % grid_size);
        ys[i] = static_cast<float>(i / grid_size);
    }
    const Matrix<float> ex = get_1d_sincos_pos_embed_from_grid(half, xs);
    const Matrix<float> ey = get_1d_sincos_pos_embed_from_grid(half, ys);
    Matrix<float> emb = xt::zeros<float>({cls + G, embed_dim});
    for (std::size_t i = 0; i < G; ++i)
        for (std::size_t k = 0; k < half; ++k) {
            emb(cls + i, k) = ex(i, k);
            emb(cls + i, half + k) = ey(i, k);
        }
    return emb;
}

}  // namespace mplug_owl2
