// `model.visual_abstractor`: MplugOwlVisualAbstractorModel of
// visual_encoder.py. Q learned queries (`query_embeds`) per image
// cross-attend to the vision encoder's output through the encoder layers;
// `visual_fc` maps them to the language model's width and `vit_eos` is
// appended, giving Q + 1 visual tokens per image.
#pragma once

#include <algorithm>
#include <string>

#include "../core/linear.hpp"
#include "../io/config.hpp"
#include "../vision/image_batch.hpp"
#include "visual_abstractor_encoder.hpp"

namespace mplug_owl2 {

template <class T>
struct VisualAbstractorModel {
    std::string name;  // model.visual_abstractor
    VisualAbstractorEncoder<T> encoder;
    Linear<T> visual_fc;     // [H, D], bias; H = the language model's hidden_size
    Matrix<T> query_embeds;  // [Q, D] (stored [1, Q, D])
    Vector<T> vit_eos;       // [H] (stored [1, 1, H])
    std::size_t encoder_hidden_size = 0;  // width of the vision features
    std::size_t vision_seq_len = 0;       // rows per image of the vision features

    void load(WeightLoader& w, const AbstractorConfig& c, std::size_t language_hidden_size, const VisionConfig& vision,
              const std::string& path = "model.visual_abstractor") {
        name = path;
        encoder_hidden_size = static_cast<std::size_t>(c.encoder_hidden_size);
        if (c.encoder_hidden_size != vision.hidden_size)
            fail(path, ": encoder_hidden_size ", c.encoder_hidden_size, " must equal the vision hidden_size ",
                 vision.hidden_size);
        const auto D = static_cast<std::size_t>(c.hidden_size), Q = static_cast<std::size_t>(c.num_learnable_queries);
        encoder.load(w, c, path + ".encoder");
        visual_fc.load(w, path + ".visual_fc", D, language_hidden_size, true);
        query_embeds = w.matrix<T>(path + ".query_embeds", Q, D);
        vit_eos = w.vector<T>(path + ".vit_eos", language_hidden_size);

        // The key positions must cover the vision sequence exactly.
        vision_seq_len = static_cast<std::size_t>(vision.seq_len());
        const auto g = static_cast<std::size_t>(c.grid_size);
        const std::size_t K = g * g + (c.use_cls_token ? 1 : 0);
        if (K != vision_seq_len)
            fail(path, ": k_pos_embed covers ", K, " vision positions (grid_size ", c.grid_size,
                 c.use_cls_token ? " squared, plus CLS" : " squared", ") but the vision encoder yields ", vision_seq_len,
                 " per image (image_size ", vision.image_size, " / patch_size ", vision.patch_size,
                 vision.use_cls_token ? ", plus CLS)" : ")");
    }

    std::size_t num_queries() const { return query_embeds.shape(0); }

    // image_features [N·Lv, D_enc] -> [N·(Q + 1), H]
    Matrix<T> forward(const Matrix<T>& image_features, std::size_t n_images, const Hooks<T>& hooks) const {
        const std::size_t Q = num_queries(), D = query_embeds.shape(1), H = visual_fc.out_features();
        check_shape(image_features, n_images * vision_seq_len, encoder_hidden_size, name + " image_features");

        // 1. the queries, one copy per image   [N·Q, D]
        Matrix<T> x = Matrix<T>::from_shape({n_images * Q, D});
        for (std::size_t n = 0; n < n_images; ++n) std::copy(query_embeds.begin(), query_embeds.end(), &x(n * Q, 0));

        // 2. encoder layers
        x = encoder.forward(x, image_features, n_images, hooks);

        // 3. visual_fc   [N·Q, H]
        const Matrix<T> y = visual_fc.forward(x, hooks, image_batch_shape(n_images, Q, H));

        // 4. append vit_eos to each image's queries   [N·(Q + 1), H]
        Matrix<T> out = Matrix<T>::from_shape({n_images * (Q + 1), H});
        for (std::size_t n = 0; n < n_images; ++n) {
            std::copy_n(&y(n * Q, 0), Q * H, &out(n * (Q + 1), 0));
            std::copy(vit_eos.begin(), vit_eos.end(), &out(n * (Q + 1) + Q, 0));
        }
        hooks.report(name, out, image_batch_shape(n_images, Q + 1, H));
        return out;
    }
};

}  // namespace mplug_owl2
