// Splicing the prompt: the official
// `MPLUGOwl2MetaForCausalLM.prepare_inputs_labels_for_multimodal`, for one
// prompt at inference (no labels, no padding).
//
// Token id −200 marks an image, anywhere in the prompt (also before BOS), as
// often as there are images, in order. Text runs are embedded with
// `embed_tokens`; each marker is replaced by its image's rows (the visual
// abstractor's Q+1 rows). The modality indicators are 0 for text rows and 1
// for visual rows. As in the official loop, the text before each marker is
// embedded by its own embed_tokens call (an empty call when two markers touch
// or the prompt starts with one), then the text after the last marker; a
// prompt without images is embedded in one call.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/hooks.hpp"
#include "../io/config.hpp"
#include "../io/image_token.hpp"
#include "../language/embedding.hpp"
#include "../language/multiway.hpp"
#include "../language/rotary_embedding.hpp"

namespace mplug_owl2 {

template <class T>
struct PreparedInputs {
    Matrix<T> inputs_embeds;                 // [L, D], L = text tokens + images · (Q+1)
    ModalityIndicators modality_indicators;  // [L]: 0 text, 1 visual
};

inline std::size_t count_image_markers(const std::vector<std::int64_t>& ids) {
    std::size_t n = 0;
    for (auto t : ids) n += t == kImageTokenIndex;
    return n;
}

// Throws unless `ids` is a prompt the model can take with `n_images` images.
inline void check_prompt(const std::vector<std::int64_t>& ids, std::size_t n_images, std::size_t vocab_size) {
    if (ids.empty()) fail("input ids: the prompt is empty");
    for (std::size_t i = 0; i < ids.size(); ++i) {
        if (ids[i] == kImageTokenIndex) continue;
        if (ids[i] < 0)
            fail("input ids: id ", ids[i], " at position ", i, " is negative; the only negative id is ",
                 kImageTokenIndex, ", the image marker");
        if (static_cast<std::size_t>(ids[i]) >= vocab_size)
            fail("input ids: id ", ids[i], " at position ", i, " is outside the vocabulary [0, ", vocab_size, ")");
    }
    const std::size_t markers = count_image_markers(ids);
    if (markers != n_images)
        fail("input ids: ", markers, " image marker", markers == 1 ? "" : "s", " (", kImageTokenIndex, ") for ",
             n_images, " image", n_images == 1 ? "" : "s", "; each image needs one marker, in order");
    // The official forward takes any one-token input for a cached decoding
    // step and never splices it: an image alone cannot be a prompt there.
    if (ids.size() == 1 && markers == 1)
        fail("input ids: a prompt of the image marker alone is not accepted (the official code treats a "
             "one-token prompt as a decoding step); add text, e.g. the BOS id");
}

// The decoder positions of a prompt: one per text id, the abstractor's
// Q + 1 rows per image marker.
inline std::size_t prompt_positions(const std::vector<std::int64_t>& ids, const ModelConfig& c) {
    const std::size_t images = count_image_markers(ids);
    const auto rows = static_cast<std::size_t>(c.abstractor.num_learnable_queries) + 1;
    return ids.size() - images + images * rows;
}

// Throws unless a prompt of `positions` positions followed by `new_tokens`
// generated ids (each fed through the cache: one position each) fits in the
// positions the config allows. `budget` names the token budget in the
// message, e.g. "--max-new-tokens".
inline void check_context(std::size_t positions, std::size_t new_tokens, const TextConfig& c,
                          const std::string& budget) {
    const std::size_t limit = max_positions(c);
    const std::string allowed = " positions the model allows (max_position_embeddings " +
                                std::to_string(c.max_position_embeddings) +
                                (c.rope_scaling ? " with " + c.rope_scaling->type + " rope_scaling)" : ")");
    if (positions > limit)
        fail("input ids: the prompt takes ", positions, " positions (text ids plus Q + 1 per image), more than the ",
             limit, allowed);
    if (new_tokens > limit - positions)
        fail(budget, " ", new_tokens, ": the prompt's ", positions, " positions plus ", new_tokens,
             " new tokens exceed the ", limit, allowed, "; at most ", limit - positions, " new tokens fit");
}

// ids with one marker per entry of image_features ([Q+1, D] each) -> the
// decoder's input and the route of every row.
template <class T>
PreparedInputs<T> prepare_inputs_for_multimodal(const std::vector<std::int64_t>& ids,
                                                const std::vector<Matrix<T>>& image_features,
                                                const Embedding<T>& embed_tokens, const Hooks<T>& hooks) {
    check_prompt(ids, image_features.size(), embed_tokens.vocab_size());
    const std::size_t D = embed_tokens.dim();
    for (std::size_t n = 0; n < image_features.size(); ++n)
        check_cols(image_features[n], D, "image " + std::to_string(n) + " features");

    // 1. the pieces in prompt order: text runs embedded, images as given
    std::vector<Matrix<T>> pieces;
    ModalityIndicators indicators;
    auto add = [&](Matrix<T> rows, std::int64_t modality) {
        indicators.insert(indicators.end(), rows.shape(0), modality);
        pieces.push_back(std::move(rows));
    };
    if (image_features.empty()) {
        add(embed_tokens.forward(ids, hooks), 0);
    } else {
        std::vector<std::int64_t> run;
        std::size_t image = 0;
        for (auto t : ids) {
            if (t != kImageTokenIndex) {
                run.push_back(t);
                continue;
            }
            add(embed_tokens.forward(run, hooks), 0);  // the text before this marker (maybe none)
            add(image_features[image++], 1);
            run.clear();
        }
        if (!run.empty()) add(embed_tokens.forward(run, hooks), 0);
    }

    // 2. concatenated: [L, D]
    PreparedInputs<T> out;
    out.inputs_embeds = Matrix<T>::from_shape({indicators.size(), D});
    std::size_t row = 0;
    for (const auto& p : pieces) {
        std::copy(p.begin(), p.end(), out.inputs_embeds.data() + row * D);
        row += p.shape(0);
    }
    out.modality_indicators = std::move(indicators);
    hooks.report("decoder.inputs_embeds", out.inputs_embeds);
    return out;
}

}  // namespace mplug_owl2
