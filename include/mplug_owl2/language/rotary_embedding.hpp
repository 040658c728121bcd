// Rotary position embedding of the decoder: transformers' (4.31–4.34)
// `LlamaRotaryEmbedding` and its two `rope_scaling` variants,
// `LlamaLinearScalingRotaryEmbedding` and
// `LlamaDynamicNTKScalingRotaryEmbedding`, which differ in one formula each.
//
// - angle(p, j) = t(p) · inv_freq_j, inv_freq_j = 1 / base^(2j/hd), j < hd/2;
//   the table row of position p is [angle | angle] (the rotate-half layout).
// - linear: t(p) = p / factor; otherwise t(p) = p.
// - dynamic: the official module caches its tables for the longest sequence
//   seen so far and rebuilds them, with a new base, whenever a forward call
//   sees more keys (kv_seq_len, cache included) than max_position_embeddings
//   and than it has cached:
//       base' = base · (factor · kv_seq_len / max_pos − (factor − 1))^(hd/(hd−2)).
//   So a prefill of S > max_pos positions rotates them all with base'(S), and
//   each later decoding step rotates its one new position with base'(S+1),
//   base'(S+2), ... while the cached keys keep the rotation they were stored
//   with. The tables here are rebuilt per call from kv_seq_len, which is that
//   behaviour for a model that starts each generation fresh (the official
//   module also carries its cache over to later, shorter prompts; see
//   docs/decoder_and_mam.md).
#pragma once

#include <cmath>
#include <cstddef>
#include <limits>
#include <optional>
#include <vector>

#include "../core/tensor.hpp"
#include "../io/config.hpp"

namespace mplug_owl2 {

// The most positions a sequence may reach. The official code never checks
// (its tables grow with the sequence), so it extrapolates silently past what
// the checkpoint was trained on; here: max_position_embeddings, or
// max_position_embeddings · factor with linear rope_scaling (its purpose), and
// no limit with dynamic rope_scaling, which rescales as the sequence grows.
inline std::size_t max_positions(const TextConfig& c) {
    const auto m = static_cast<std::size_t>(c.max_position_embeddings);
    if (!c.rope_scaling) return m;
    if (c.rope_scaling->type == "linear") return static_cast<std::size_t>(std::floor(double(m) * c.rope_scaling->factor));
    return std::numeric_limits<std::size_t>::max();
}

struct RotaryEmbedding {
    std::size_t dim = 0;  // head dimension hd
    double base = 10000.0;  // rope_theta
    std::size_t max_position_embeddings = 2048;
    std::optional<RopeScaling> scaling;

    void configure(const TextConfig& c) {
        dim = static_cast<std::size_t>(c.head_dim());
        base = c.rope_theta;
        max_position_embeddings = static_cast<std::size_t>(c.max_position_embeddings);
        scaling = c.rope_scaling;
    }

    bool dynamic() const { return scaling && scaling->type == "dynamic"; }
    bool linear() const { return scaling && scaling->type == "linear"; }

    // The base of the tables a forward call with kv_seq_len keys uses.
    double base_for(std::size_t kv_seq_len) const {
        if (!dynamic() || kv_seq_len <= max_position_embeddings) return base;
        const double f = scaling->factor;
        const double d = static_cast<double>(dim);
        return base * std::pow(f * double(kv_seq_len) / double(max_position_embeddings) - (f - 1.0), d / (d - 2.0));
    }

    // cos and sin [n, hd] of positions first .. first+n−1 for a forward call
    // that sees kv_seq_len keys.
    template <class T>
    void tables(std::size_t first, std::size_t n, std::size_t kv_seq_len, Matrix<T>& cos, Matrix<T>& sin) const {
        const std::size_t half = dim / 2;
        const double b = base_for(kv_seq_len);
        std::vector<double> inv_freq(half);
        for (std::size_t j = 0; j < half; ++j)
            inv_freq[j] = 1.0 / std::pow(b, double(2 * j) / double(dim));
        cos = Matrix<T>::from_shape({n, dim});
        sin = Matrix<T>::from_shape({n, dim});
        for (std::size_t r = 0; r < n; ++r) {
            const double p = double(first + r);
            const double t = linear() ? p / scaling->factor : p;
            for (std::size_t j = 0; j < half; ++j) {
                const double a = t * inv_freq[j];
                cos(r, j) = cos(r, j + half) = T(std::cos(a));
                sin(r, j) = sin(r, j + half) = T(std::sin(a));
            }
        }
    }

    // x [n, heads·hd] in place, per head: x·cos + rotate_half(x)·sin, where
    // rotate_half(x) = [−x2, x1] for x = [x1, x2] (pairs i and i + hd/2).
    template <class T>
    void apply(Matrix<T>& x, const Matrix<T>& cos, const Matrix<T>& sin) const {
        const std::size_t half = dim / 2;
        const std::size_t heads = x.shape(1) / dim;
        for (std::size_t r = 0; r < x.shape(0); ++r)
            for (std::size_t h = 0; h < heads; ++h) {
                T* v = &x(r, h * dim);
                for (std::size_t j = 0; j < half; ++j) {
                    const T x1 = v[j], x2 = v[j + half];
                    v[j] = x1 * cos(r, j) + (-x2) * sin(r, j);
                    v[j + half] = x2 * cos(r, j + half) + x1 * sin(r, j + half);
                }
            }
    }
};

}  // namespace mplug_owl2
