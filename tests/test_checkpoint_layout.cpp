// The listed checkpoint layout equals the tiny reference checkpoint, name for
// name and shape for shape, and follows the configuration.
#include <catch2/catch.hpp>

#include <map>

#include "mplug_owl2/io/checkpoint_layout.hpp"
#include "mplug_owl2/io/safetensors.hpp"

using namespace mplug_owl2;

TEST_CASE("the layout of the tiny config is exactly the tiny checkpoint", "[layout]") {
    const std::string dir = std::string(MPLUG_OWL2_REFERENCE_DIR) + "/tiny";
    const ModelConfig c = load_config(dir + "/config.json");
    SafetensorsFile f(dir + "/model.safetensors");
    std::map<std::string, Shape> listed;
    for (const auto& e : checkpoint_layout(c)) {
        CHECK(listed.count(e.name) == 0);
        listed[e.name] = e.shape;
    }
    CHECK(listed.size() == f.names().size());
    for (const auto& name : f.names()) {
        INFO(name);
        REQUIRE(listed.count(name) == 1);
        CHECK(listed[name] == f.find(name)->shape);
    }
}

TEST_CASE("the layout follows bias tying extra buffers and sharding", "[layout]") {
    ModelConfig c = parse_config(R"({"num_hidden_layers": 3, "attention_bias": true, "tie_word_embeddings": true,
                                     "num_key_value_heads": 8})");
    LayoutOptions opt;
    opt.rotary_inv_freq = true;
    std::map<std::string, TensorEntry> by_name;
    for (const auto& e : checkpoint_layout(c, opt)) by_name[e.name] = e;
    CHECK(by_name.count("lm_head.weight") == 0);
    CHECK(by_name.at("model.layers.2.self_attn.k_proj.multiway.1.bias").shape == Shape{1024});
    CHECK(by_name.at("model.layers.2.self_attn.k_proj.multiway.1.weight").shape == Shape{1024, 4096});
    CHECK(by_name.at("model.layers.0.self_attn.o_proj.bias").shape == Shape{4096});
    CHECK(by_name.at("model.layers.1.self_attn.rotary_emb.inv_freq").shape == Shape{64});
    CHECK(by_name.at("model.layers.1.mlp.down_proj.weight").shard == 2);
    CHECK(by_name.at("model.vision_model.embeddings.position_embedding").shape == Shape{1, 1025, 1024});
    CHECK(by_name.at("model.visual_abstractor.encoder.layers.5.crossattention.attention.k_pos_embed").shape ==
          Shape{1025, 1024});
    CHECK(by_name.at("model.visual_abstractor.vit_eos").shard == 0);
}
