// `model`: the official `MPLUGOwl2LlamaModel` (modeling_mplug_owl2.py), a
// LlamaModel (embed_tokens, layers, norm; language/llama_model.hpp) that also
// holds the image side, `vision_model` and `visual_abstractor`, as the
// official MPLUGOwl2MetaModel adds them. Its forward is the decoder's.
#pragma once

#include <string>

#include "../abstractor/visual_abstractor_model.hpp"
#include "../io/config.hpp"
#include "../language/llama_model.hpp"
#include "../vision/vision_model.hpp"

namespace mplug_owl2 {

template <class T>
struct MplugOwl2LlamaModel : LlamaModel<T> {
    VisionModel<T> vision_model;                // model.vision_model
    VisualAbstractorModel<T> visual_abstractor;  // model.visual_abstractor

    void load(WeightLoader& w, const ModelConfig& c, const std::string& path = "model") {
        vision_model.load(w, c.vision, path + ".vision_model");
        visual_abstractor.load(w, c.abstractor, static_cast<std::size_t>(c.text.hidden_size), c.vision,
                               path + ".visual_abstractor");
        LlamaModel<T>::load(w, c.text, path);
    }
};

}  // namespace mplug_owl2
