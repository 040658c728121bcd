// `model.visual_abstractor.encoder.layers.i.crossattention.attention`:
// MplugOwlVisualAbstractorMultiHeadAttention of visual_encoder.py. The
// queries attend over the keys/values `kv` = [normalised queries ;
// normalised vision features] of their own image. Fixed sin-cos positions
// are added to the inputs of `query` and `key`, never to `value`:
//   q = query(xn + q_pos)
//   k = key(kv + [q_pos ; k_pos])
//   v = value(kv)
//   out = softmax(q·kᵀ / √hd) · v, per head (no mask: the official masks are
//   all zeros)
// q_pos / k_pos are buffers in the checkpoint; without them they are
// rebuilt (sincos_pos_embed.hpp). k_pos has one row per vision position:
// grid_size² patches, plus an all-zero CLS row with use_cls_token, and the
// vision sequence must have exactly that length (the official sum does not
// broadcast otherwise).
#pragma once

#include <cmath>
#include <string>

#include "../core/linear.hpp"
#include "../io/config.hpp"
#include "../kernels/attention.hpp"
#include "../vision/image_batch.hpp"
#include "../vision/scaled_dot_product_attention.hpp"
#include "sincos_pos_embed.hpp"

namespace mplug_owl2 {

template <class T>
struct VisualAbstractorMultiHeadAttention {
    std::string name;                 // ...crossattention.attention
    std::size_t num_attention_heads = 0, attention_head_size = 0;
    Linear<T> query;                  // [D, D], bias
    Linear<T> key;                    // [D, D_enc], bias
    Linear<T> value;                  // [D, D_enc], bias
    Matrix<T> q_pos_embed;            // [Q, D]
    Matrix<T> k_pos_embed;            // [(1 +) grid_size², D]

    void load(WeightLoader& w, const AbstractorConfig& c, const std::string& path) {
        name = path;
        const auto D = static_cast<std::size_t>(c.hidden_size), De = static_cast<std::size_t>(c.encoder_hidden_size);
        num_attention_heads = static_cast<std::size_t>(c.num_attention_heads);
        if (num_attention_heads == 0 || D % num_attention_heads != 0)
            fail(path, ": num_attention_heads ", num_attention_heads, " must divide hidden_size ", D);
        attention_head_size = D / num_attention_heads;
        query.load(w, path + ".query", D, D, true);
        key.load(w, path + ".key", De, D, true);
        value.load(w, path + ".value", De, D, true);

        const auto Q = static_cast<std::size_t>(c.num_learnable_queries), g = static_cast<std::size_t>(c.grid_size);
        const std::size_t K = g * g + (c.use_cls_token ? 1 : 0);
        q_pos_embed = w.has(path + ".q_pos_embed") ? w.matrix<T>(path + ".q_pos_embed", Q, D)
                                                   : Matrix<T>(xt::cast<T>(get_1d_sincos_pos_embed(D, Q)));
        k_pos_embed = w.has(path + ".k_pos_embed")
                          ? w.matrix<T>(path + ".k_pos_embed", K, D)
                          : Matrix<T>(xt::cast<T>(get_2d_sincos_pos_embed(D, g, c.use_cls_token)));
    }

    std::size_t num_queries() const { return q_pos_embed.shape(0); }
    // Vision positions per image that k_pos_embed fits.
    std::size_t num_key_positions() const { return k_pos_embed.shape(0); }

    // xn [N·Q, D] (normalised queries), kv [N·(Q + Lv), D] -> [N·Q, D]
    Matrix<T> forward(const Matrix<T>& xn, const Matrix<T>& kv, std::size_t n_images, const Hooks<T>& hooks) const {
        const std::size_t Q = num_queries(), K = Q + num_key_positions(), D = query.out_features();
        const std::size_t H = num_attention_heads, hd = attention_head_size;
        if (xn.shape(0) != n_images * Q) fail(name, ": expected ", n_images * Q, " query rows, found ", xn.shape(0));
        if (kv.shape(0) != n_images * K)
            fail(name, ": expected ", n_images, " × ", K, " key/value rows (", Q, " queries + ", K - Q,
                 " positions of k_pos_embed), found ", kv.shape(0));

        // 1. q = query(xn + q_pos)   [N·Q, D]
        Matrix<T> x_pos = xn;
        for (std::size_t r = 0; r < x_pos.shape(0); ++r)
            for (std::size_t d = 0; d < D; ++d) x_pos(r, d) += q_pos_embed(r % Q, d);
        const Matrix<T> q = query.forward(x_pos, hooks, image_batch_shape(n_images, Q, D));

        // 2. k = key(kv + [q_pos ; k_pos])   [N·K, D]
        Matrix<T> kv_pos = kv;
        for (std::size_t r = 0; r < kv_pos.shape(0); ++r) {
            const std::size_t i = r % K;
            const T* pos = i < Q ? &q_pos_embed(i, 0) : &k_pos_embed(i - Q, 0);
            for (std::size_t d = 0; d < D; ++d) kv_pos(r, d) += pos[d];
        }
        const Matrix<T> k = key.forward(kv_pos, hooks, image_batch_shape(n_images, K, D));

        // 3. v = value(kv)   [N·K, D]
        const Matrix<T> v = value.forward(kv, hooks, image_batch_shape(n_images, K, D));

        // 4. per image and head: softmax(q·kᵀ / √hd) · v   [N·Q, D], head h at columns hd·h
        Matrix<T> context = Matrix<T>::from_shape({n_images * Q, D});
        const T scale = T(1) / std::sqrt(T(hd));
        if (hooks.attention_probs())
            attend_reporting_probs(q, k, v, n_images, scale, context, hooks);
        else
            for (std::size_t n = 0; n < n_images; ++n)
                kernels::multi_head_attention<T>(H, Q, K, hd, scale, {&q(n * Q, 0), D, hd}, {&k(n * K, 0), D, hd},
                                                 {&v(n * K, 0), D, hd}, {&context(n * Q, 0), D, hd});
        hooks.report(name, context, image_batch_shape(n_images, Q, D));
        return context;
    }

private:
    // Step 4 when hooks ask for attention probabilities, on the plain
    // per-head path: every image's and head's p = softmax(q·kᵀ / √hd) is
    // kept and reported as name.probs [N, H, Q, K] (the official
    // attention_probs), then the context is p · v with p as the hooks left it.
    void attend_reporting_probs(const Matrix<T>& q, const Matrix<T>& k, const Matrix<T>& v, std::size_t n_images,
                                T scale, Matrix<T>& context, const Hooks<T>& hooks) const {
        const std::size_t Q = num_queries(), K = Q + num_key_positions(), D = query.out_features();
        const std::size_t H = num_attention_heads, hd = attention_head_size;
        Matrix<T> probs = Matrix<T>::from_shape({n_images * H * Q, K});
        for (std::size_t n = 0; n < n_images; ++n)
            for (std::size_t h = 0; h < H; ++h)
                scaled_dot_product_attention<T>(Q, K, hd, scale, &q(n * Q, hd * h), D, &k(n * K, hd * h), D,
                                                &v(n * K, hd * h), D, &context(n * Q, hd * h), D,
                                                &probs((n * H + h) * Q, 0));
        hooks.report(name + ".probs", probs, {n_images, H, Q, K});
        for (std::size_t n = 0; n < n_images; ++n)
            for (std::size_t h = 0; h < H; ++h)
                gemm<T>(Trans::No, Trans::No, Q, hd, K, T(1), &probs((n * H + h) * Q, 0), K, &v(n * K, hd * h), D,
                        T(0), &context(n * Q, hd * h), D);
    }
};

}  // namespace mplug_owl2
