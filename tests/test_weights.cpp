// The tiny reference checkpoint loads under the official tensor names, in
// float and double, with strict shape checks.
#include <catch2/catch.hpp>

#include "mplug_owl2/core/layer_norm.hpp"
#include "mplug_owl2/core/linear.hpp"
#include "mplug_owl2/io/config.hpp"
#include "mplug_owl2/io/safetensors.hpp"

using namespace mplug_owl2;

static const std::string kTiny = std::string(MPLUG_OWL2_REFERENCE_DIR) + "/tiny";

TEMPLATE_TEST_CASE("every tiny tensor loads by its official name with its exact float32 value", "[weights]", float, double) {
    using T = TestType;
    SafetensorsFile f(kTiny + "/model.safetensors");
    WeightLoader w(f);
    for (const auto& name : f.names()) {
        const TensorInfo* info = f.find(name);
        REQUIRE(info->dtype == DType::F32);
        auto x = w.tensor<T>(name, info->shape);
        const float* raw = reinterpret_cast<const float*>(info->data);
        for (std::size_t i = 0; i < x.size(); ++i) REQUIRE(x.data()[i] == T(raw[i]));
    }
    CHECK(w.unused().empty());
}

TEMPLATE_TEST_CASE("modules load from the tiny checkpoint and mis-shapes are named", "[weights]", float, double) {
    using T = TestType;
    const ModelConfig c = load_config(kTiny + "/config.json");
    SafetensorsFile f(kTiny + "/model.safetensors");
    WeightLoader w(f);
    Linear<T> qkv;
    const auto D = static_cast<std::size_t>(c.vision.hidden_size);
    qkv.load(w, "model.vision_model.encoder.layers.0.self_attn.query_key_value", D, 3 * D, true);
    CHECK(qkv.weight.shape(0) == 3 * D);
    CHECK(qkv.bias.size() == 3 * D);
    LayerNorm<T> ln;
    ln.load(w, "model.vision_model.post_layernorm", D, c.vision.layer_norm_eps);
    CHECK(ln.eps == 1e-6);
    // [1, Q, D] parameters may be asked for as [Q, D].
    CHECK(w.tensor<T>("model.visual_abstractor.query_embeds", {8, 64}).shape(0) == 8);
    Linear<T> wrong;
    CHECK_THROWS_WITH(wrong.load(w, "model.layers.0.mlp.gate_proj", 64, 64, false),
                      Catch::Contains("model.layers.0.mlp.gate_proj.weight") && Catch::Contains("expected shape [64, 64]") &&
                          Catch::Contains("found [160, 64]"));
    CHECK_THROWS_WITH(wrong.load(w, "model.layers.0.mlp.gate_proj", 64, 160, true),
                      Catch::Contains("model.layers.0.mlp.gate_proj.bias") && Catch::Contains("missing"));
    const auto unused = w.unused();
    CHECK(std::find(unused.begin(), unused.end(), "model.norm.weight") != unused.end());
    CHECK(std::find(unused.begin(), unused.end(), "model.vision_model.post_layernorm.weight") == unused.end());
}
