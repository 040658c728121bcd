// The language decoder under `model.`: transformers' `LlamaModel` with the
// forward that modeling_llama2.py patches in (`model_forward`), which carries
// the modality indicators to every layer. Holds `embed_tokens`, `layers.i`
// and the final `norm`; the vision tower and abstractor that share the
// official `model.` prefix live in vision/ and abstractor/.
//
// The routing policy of the modality-adaptive module is a member, `mam`, set
// at run time: every multiway module of every layer routes through it.
#pragma once

#include <string>
#include <vector>

#include "../core/rms_norm.hpp"
#include "../io/config.hpp"
#include "decoder_layer.hpp"
#include "embedding.hpp"
#include "kv_cache.hpp"
#include "multiway.hpp"
#include "rotary_embedding.hpp"

namespace mplug_owl2 {

template <class T>
struct LlamaModel {
    std::string name;  // model
    TextConfig config;
    Embedding<T> embed_tokens;              // [vocab, D]
    std::vector<DecoderLayer<T>> layers;
    RMSNorm<T> norm;                        // [D]
    MamRouting mam;                         // official routing unless set

    void load(WeightLoader& w, const TextConfig& c, const std::string& path = "model") {
        name = path;
        config = c;
        const auto D = static_cast<std::size_t>(c.hidden_size);
        embed_tokens.load(w, path + ".embed_tokens", static_cast<std::size_t>(c.vocab_size), D);
        layers.resize(static_cast<std::size_t>(c.num_hidden_layers));
        for (std::size_t i = 0; i < layers.size(); ++i)
            layers[i].load(w, c, path + ".layers." + std::to_string(i), i);
        norm.load(w, path + ".norm", D, c.rms_norm_eps);
    }

    // An empty cache for this decoder.
    KVCache<T> new_cache() const {
        return KVCache<T>(layers.size(), static_cast<std::size_t>(config.num_key_value_heads),
                          static_cast<std::size_t>(config.head_dim()));
    }

    // inputs_embeds [L, D] of the positions after the cache's, one modality
    // indicator each -> the normalised hidden states [L, D]. The cache grows
    // by L positions.
    Matrix<T> forward(const Matrix<T>& inputs_embeds, const ModalityIndicators& indicators, KVCache<T>& cache,
                      const Hooks<T>& hooks) const {
        check_cols(inputs_embeds, static_cast<std::size_t>(config.hidden_size), name + " inputs_embeds");
        if (cache.layers.size() != layers.size())
            fail(name, ": key/value cache has ", cache.layers.size(), " layers, the decoder ", layers.size());
        const std::size_t limit = max_positions(config);
        if (cache.length + inputs_embeds.shape(0) > limit)
            fail("the sequence would reach ", cache.length + inputs_embeds.shape(0), " positions (", cache.length,
                 " cached + ", inputs_embeds.shape(0), " new), more than the ", limit,
                 " the config allows (max_position_embeddings ", config.max_position_embeddings,
                 config.rope_scaling ? " with linear rope_scaling" : "", ")");
        // 1. every layer in turn, each continuing its own cache
        Matrix<T> h = inputs_embeds;
        for (std::size_t i = 0; i < layers.size(); ++i)
            h = layers[i].forward(h, indicators, cache.layers[i], mam, hooks);
        cache.length += inputs_embeds.shape(0);
        // 2. final RMSNorm: the decoder's output
        Matrix<T> y = norm.forward(h, hooks);
        hooks.report(name, y);
        return y;
    }
};

}  // namespace mplug_owl2
