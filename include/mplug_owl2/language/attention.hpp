// `model.layers.i.self_attn`: the official `LlamaAttention` of
// modeling_llama2.py, which replaces transformers' own. Queries and the
// output projection are shared; keys and values come from modality-adaptive
// projections (`k_proj.multiway.{0,1}`, `v_proj.multiway.{0,1}`).
//
// Grouped-query attention (num_key_value_heads < num_attention_heads) works
// here, query head h reading key/value head h / (heads / kv_heads) as
// transformers' repeat_kv does; the official MultiwayNetwork cannot run it
// (it allocates the merged k/v output with the input's width).
#pragma once

#include <string>

#include "../core/linear.hpp"
#include "../io/config.hpp"
#include "../kernels/causal_attention.hpp"
#include "attention_probs.hpp"
#include "kv_cache.hpp"
#include "multiway.hpp"
#include "rotary_embedding.hpp"

namespace mplug_owl2 {

template <class T>
struct Attention {
    std::string name;  // model.layers.i.self_attn
    std::size_t num_heads = 0, num_key_value_heads = 0, head_dim = 0;
    Linear<T> q_proj;            // [heads·hd, D]
    Multiway<Linear<T>> k_proj;  // 2 × [kv_heads·hd, D]
    Multiway<Linear<T>> v_proj;  // 2 × [kv_heads·hd, D]
    Linear<T> o_proj;            // [D, heads·hd]
    RotaryEmbedding rotary_emb;  // no weights (inv_freq is recomputed, never read)

    void load(WeightLoader& w, const TextConfig& c, const std::string& path, std::size_t layer) {
        name = path;
        num_heads = static_cast<std::size_t>(c.num_attention_heads);
        num_key_value_heads = static_cast<std::size_t>(c.num_key_value_heads);
        head_dim = static_cast<std::size_t>(c.head_dim());
        const auto D = static_cast<std::size_t>(c.hidden_size);
        const std::size_t kv = num_key_value_heads * head_dim;
        q_proj.load(w, path + ".q_proj", D, num_heads * head_dim, c.attention_bias);
        k_proj.load(w, path + ".k_proj", MamPart::KProj, layer, D, kv, c.attention_bias);
        v_proj.load(w, path + ".v_proj", MamPart::VProj, layer, D, kv, c.attention_bias);
        o_proj.load(w, path + ".o_proj", num_heads * head_dim, D, c.attention_bias);
        rotary_emb.configure(c);
    }

    // x [L, D], the positions after the cached ones -> [L, D]. The new
    // keys and values are appended to `cache`.
    Matrix<T> forward(const Matrix<T>& x, const ModalityIndicators& indicators, typename KVCache<T>::Layer& cache,
                      const MamRouting& routing, const Hooks<T>& hooks) const {
        const std::size_t L = x.shape(0);
        const std::size_t past = cache.length();
        const std::size_t S = past + L;  // kv_seq_len: keys seen by this call
        const std::size_t H = num_heads, hd = head_dim;

        // 1. q = q_proj(x) [L, H·hd]; k, v = k_proj_m(x), v_proj_m(x) [L, KVH·hd]
        Matrix<T> q = q_proj.forward(x, hooks);
        Matrix<T> k = k_proj.forward(x, indicators, routing, hooks);
        Matrix<T> v = v_proj.forward(x, indicators, routing, hooks);

        // 2. RoPE on q and k at positions past .. S−1 (tables for S keys)
        Matrix<T> cos, sin;
        rotary_emb.tables<T>(past, L, S, cos, sin);
        rotary_emb.apply(q, cos, sin);
        rotary_emb.apply(k, cos, sin);

        // 3. the cache now holds the keys and values of all S positions
        cache.append(k, v);

        // 4. per head: softmax(q·kᵀ / √hd + causal mask) · v, the softmax in
        //    float32 as the official code does it; query head h reads
        //    key/value head h / (H / KVH)   [L, H·hd]; when hooks ask for
        //    them, the probabilities are reported as name.probs [H, L, S]
        Matrix<T> attn = Matrix<T>::from_shape({L, H * hd});
        if (hooks.attention_probs())
            causal_attention_reporting_probs<T>(q, H, cache, attn, name + ".probs", hooks);
        else
            kernels::causal_attention<T>(q, H, cache, attn);

        // 5. o_proj
        Matrix<T> y = o_proj.forward(attn, hooks);
        hooks.report(name, y);
        return y;
    }
};

}  // namespace mplug_owl2
