// The whole model: the official `MPLUGOwl2LlamaForCausalLM`
// (modeling_mplug_owl2.py) — `model` (vision tower, abstractor, LLaMA-2
// decoder with the modality-adaptive module) and `lm_head`.
//
//   images [N, 3, S, S] -> encode_images -> N × [Q+1, H]
//   ids with −200 markers + image features -> prepare_inputs -> inputs_embeds, indicators
//   -> forward (prefill) -> logits [L, V]; the key/value cache holds the prompt
//   -> decode_step (one text token at a time) -> logits [1, V]
//   generate: prefill, then decoding steps choosing ids greedily or by sampling.
//
// Reported besides every module's output: `decoder.inputs_embeds` (the
// spliced input) and `logits` (lm_head's output, which the official forward
// returns as is).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <xtensor/xtensor.hpp>

#include "../core/linear.hpp"
#include "../io/config.hpp"
#include "../io/tensor_source.hpp"
#include "../language/kv_cache.hpp"
#include "../language/multiway.hpp"
#include "generation.hpp"
#include "mplug_owl2_llama_model.hpp"
#include "prepare_inputs.hpp"
#include "sampling.hpp"

namespace mplug_owl2 {

template <class T>
struct MplugOwl2LlamaForCausalLM {
    ModelConfig config;
    MplugOwl2LlamaModel<T> model;  // model.*
    Linear<T> lm_head;             // [V, D], no bias; model.embed_tokens.weight when tie_word_embeddings
    std::vector<std::string> unused_tensors;  // checkpoint tensors no module reads (e.g. rotary_emb.inv_freq)

    void load(const TensorSource& weights, const ModelConfig& c) {
        WeightLoader w(weights);
        load(w, c);
    }

    // Through a loader set up by the caller (e.g. to keep half-precision weights).
    void load(WeightLoader& w, const ModelConfig& c) {
        config = c;
        model.load(w, c);
        const auto D = static_cast<std::size_t>(c.text.hidden_size), V = static_cast<std::size_t>(c.text.vocab_size);
        // A tied head reads the embedding table; a stored lm_head.weight is then left unused.
        lm_head.load(w, c.text.tie_word_embeddings ? "model.embed_tokens" : "lm_head", D, V, false);
        lm_head.name = "lm_head";
        unused_tensors = w.unused();
    }

    // The decoder's float projections and lm_head packed in the order of the
    // fast products (Linear::pack; kernels/packed_weights.hpp): the prompt's
    // products run up to 20% faster (the same sums in the same order; the
    // few-row products of decoding add in another order, so their float
    // results may differ in the last bits), and each `weight` is then
    // empty (Linear::dense_weight gives it back). Weights
    // kept in fp16/bf16 and double models stay as they are. Returns the
    // number of matrices packed.
    std::size_t pack_decoder_weights() {
        std::size_t n = 0;
        for (auto& layer : model.layers) {
            auto& a = layer.self_attn;
            for (Linear<T>* m : {&a.q_proj, &a.k_proj.multiway[0], &a.k_proj.multiway[1], &a.v_proj.multiway[0],
                                 &a.v_proj.multiway[1], &a.o_proj, &layer.mlp.gate_proj, &layer.mlp.up_proj,
                                 &layer.mlp.down_proj})
                n += m->pack();
        }
        n += lm_head.pack();
        return n;
    }

    // The routing policy of every multiway module (official unless set).
    void set_mam_routing(const MamRouting& r) {
        for (std::size_t l : r.layers)
            if (l >= model.layers.size())
                fail("modality-adaptive routing: layer ", l, " does not exist (the decoder has ", model.layers.size(),
                     " layers)");
        model.mam = r;
    }
    const MamRouting& mam_routing() const { return model.mam; }

    KVCache<T> new_cache() const { return model.new_cache(); }

    // pixels [N, 3, S, S] -> N image features [Q+1, H] (none for N = 0).
    std::vector<Matrix<T>> encode_images(const xt::xtensor<T, 4>& pixels, const Hooks<T>& hooks) const {
        const std::size_t N = pixels.shape(0);
        if (N == 0) return {};
        const auto S = static_cast<std::size_t>(config.vision.image_size);
        if (pixels.shape(1) != 3 || pixels.shape(2) != S || pixels.shape(3) != S)
            fail("pixel values: expected shape ", shape_str({N, 3, S, S}), " (image_size ", S, "), found ",
                 shape_str({pixels.shape(0), pixels.shape(1), pixels.shape(2), pixels.shape(3)}));
        // 1. vision_model(images)   [N·(1+g²), Dv]
        const Matrix<T> vision = model.vision_model.forward(pixels, hooks);
        // 2. visual_abstractor(encoder_hidden_states=...)   [N·(Q+1), H]
        const Matrix<T> all = model.visual_abstractor.forward(vision, N, hooks);
        // 3. one [Q+1, H] block per image
        const std::size_t rows = all.shape(0) / N;
        std::vector<Matrix<T>> out;
        for (std::size_t n = 0; n < N; ++n) out.push_back(xt::view(all, xt::range(n * rows, (n + 1) * rows), xt::all()));
        return out;
    }

    PreparedInputs<T> prepare_inputs(const std::vector<std::int64_t>& ids, const std::vector<Matrix<T>>& image_features,
                                     const Hooks<T>& hooks) const {
        return prepare_inputs_for_multimodal(ids, image_features, model.embed_tokens, hooks);
    }

    // The prefill: the prepared prompt after the cache's positions -> logits [L, V].
    Matrix<T> forward(const PreparedInputs<T>& in, KVCache<T>& cache, const Hooks<T>& hooks) const {
        return logits_of(in.inputs_embeds, in.modality_indicators, cache, hooks);
    }

    // The prefill for generation, which reads only the last position's
    // logits: lm_head on that row alone -> logits [1, V].
    Matrix<T> prefill(const PreparedInputs<T>& in, KVCache<T>& cache, const Hooks<T>& hooks) const {
        return logits_of(in.inputs_embeds, in.modality_indicators, cache, hooks, /*last_row_only=*/true);
    }

    // One decoding step: `token` (a text position) after the cache -> logits [1, V].
    Matrix<T> decode_step(std::int64_t token, KVCache<T>& cache, const Hooks<T>& hooks) const {
        const Matrix<T> embeds = model.embed_tokens.forward({token}, hooks);
        return logits_of(embeds, ModalityIndicators{0}, cache, hooks);
    }

    // Generation after a prefill whose logits are `prompt_logits`: choose an
    // id from the last row, then repeatedly feed the last id through the
    // cache and choose the next from its logits, until the budget, an
    // end-of-sequence id (when stopping at one), on_token's request or the
    // position limit.
    Generation<T> generate(const Matrix<T>& prompt_logits, KVCache<T>& cache, const GenerationConfig& g,
                           const Hooks<T>& hooks) const {
        const std::size_t V = prompt_logits.shape(1);
        std::vector<std::int64_t> eos = g.eos_token_ids;
        if (eos.empty()) eos.assign(config.text.eos_token_id.begin(), config.text.eos_token_id.end());
        Sampler sampler(g.sampling);
        Generation<T> out;
        std::vector<T> rows;
        std::int64_t next = sampler.pick(&prompt_logits(prompt_logits.shape(0) - 1, 0), V);
        for (std::size_t i = 0; i < g.max_new_tokens; ++i) {
            out.ids.push_back(next);
            const bool go_on = !g.on_token || g.on_token(next);
            if (g.stop_at_eos && std::find(eos.begin(), eos.end(), next) != eos.end()) {
                out.stop = StopReason::Eos;
                break;
            }
            if (!go_on) {
                out.stop = StopReason::Stopped;
                break;
            }
            if (cache.length >= max_positions(config.text)) {
                out.stop = StopReason::ContextFull;
                break;
            }
            const Matrix<T> step = decode_step(next, cache, hooks);
            rows.insert(rows.end(), step.begin(), step.end());
            next = sampler.pick(step.data(), V);
        }
        out.step_logits = Matrix<T>::from_shape({rows.size() / V, V});
        std::copy(rows.begin(), rows.end(), out.step_logits.begin());
        return out;
    }

    // The whole way from a prompt and its images ([N, 3, S, S], N markers).
    Generation<T> generate(const std::vector<std::int64_t>& ids, const xt::xtensor<T, 4>& pixels,
                           const GenerationConfig& g, const Hooks<T>& hooks) const {
        check_prompt(ids, pixels.shape(0), static_cast<std::size_t>(config.text.vocab_size));
        KVCache<T> cache = new_cache();
        const PreparedInputs<T> in = prepare_inputs(ids, encode_images(pixels, hooks), hooks);
        reserve_cache(cache, in.inputs_embeds.shape(0), g.max_new_tokens);
        return generate(prefill(in, cache, hooks), cache, g, hooks);
    }

    // Room in `cache` for a prompt of `positions` and a budget of new tokens,
    // up to the trained length (no further: with dynamic rope_scaling there
    // is no limit, and the cache grows as it fills).
    void reserve_cache(KVCache<T>& cache, std::size_t positions, std::size_t max_new_tokens) const {
        const auto trained = static_cast<std::size_t>(config.text.max_position_embeddings);
        cache.reserve(positions + std::min(max_new_tokens, trained > positions ? trained - positions : 0));
    }

private:
    Matrix<T> logits_of(const Matrix<T>& embeds, const ModalityIndicators& indicators, KVCache<T>& cache,
                        const Hooks<T>& hooks, bool last_row_only = false) const {
        // 1. the decoder: layers, then the final norm   [L, D]
        Matrix<T> hidden = model.forward(embeds, indicators, cache, hooks);
        if (last_row_only && hidden.shape(0) > 1)
            hidden = xt::view(hidden, xt::range(hidden.shape(0) - 1, hidden.shape(0)), xt::all());
        // 2. lm_head   [L, V], or [1, V] on the last row alone
        Matrix<T> logits = lm_head.forward(hidden, hooks);
        hooks.report("logits", logits);
        return logits;
    }
};

}  // namespace mplug_owl2
