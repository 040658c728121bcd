// `model.vision_model`: MplugOwlVisionModel of visual_encoder.py, the
// CLIP-style ViT: embeddings, the encoder, then `post_layernorm` over the
// whole sequence (CLS row included) unless use_post_layernorm is false. Its
// output, one row per position and image, is what the abstractor reads. (The
// official module also applies post_layernorm once more to the CLS row as a
// pooled output that nothing uses; that call is not made here.)
#pragma once

#include <string>

#include <xtensor/xtensor.hpp>

#include "../core/layer_norm.hpp"
#include "../io/config.hpp"
#include "image_batch.hpp"
#include "vision_embeddings.hpp"
#include "vision_encoder.hpp"

namespace mplug_owl2 {

template <class T>
struct VisionModel {
    std::string name;  // model.vision_model
    VisionEmbeddings<T> embeddings;
    VisionEncoder<T> encoder;
    LayerNorm<T> post_layernorm;  // eps = layer_norm_eps; unused (no weights) without use_post_layernorm
    bool use_post_layernorm = true;

    void load(WeightLoader& w, const VisionConfig& c, const std::string& path = "model.vision_model") {
        name = path;
        embeddings.load(w, c, path + ".embeddings");
        encoder.load(w, c, path + ".encoder");
        use_post_layernorm = c.use_post_layernorm;
        if (use_post_layernorm)
            post_layernorm.load(w, path + ".post_layernorm", static_cast<std::size_t>(c.hidden_size),
                                c.layer_norm_eps);
    }

    // pixels [N, 3, S, S] -> [N·L, D], image n's L rows after image n−1's
    Matrix<T> forward(const xt::xtensor<T, 4>& pixels, const Hooks<T>& hooks) const {
        const std::size_t N = pixels.shape(0);
        // 1. embeddings   [N·L, D]
        Matrix<T> h = embeddings.forward(pixels, hooks);
        // 2. encoder layers
        h = encoder.forward(h, N, hooks);
        // 3. post_layernorm on every row
        const Shape shape = image_batch_shape(N, rows_per_image(h, N, name), h.shape(1));
        if (use_post_layernorm) h = post_layernorm.forward(h, hooks, shape);
        hooks.report(name, h, shape);
        return h;
    }
};

}  // namespace mplug_owl2
