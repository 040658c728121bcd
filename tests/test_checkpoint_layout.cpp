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

#include "mplug_owl2/io/synthetic.hpp"

TEST_CASE("synthetic weights follow their rules and are deterministic", "[layout]") {
    std::vector<float> a(4096), b(4096), g(64), bias(64), inv(8);
    synthetic_values("model.layers.0.mlp.up_proj.weight", {64, 64}, 7, a.data());
    synthetic_values("model.layers.0.mlp.up_proj.weight", {64, 64}, 7, b.data());
    CHECK(a == b);
    synthetic_values("model.layers.0.mlp.up_proj.weight", {64, 64}, 8, b.data());
    CHECK(a != b);
    double mean = 0, var = 0;
    for (float x : a) mean += x;
    mean /= a.size();
    for (float x : a) var += (x - mean) * (x - mean);
    var /= a.size();
    CHECK(std::abs(mean) < 0.01);
    CHECK(var == Approx(1.0 / 64).epsilon(0.1));
    synthetic_values("model.norm.weight", {64}, 7, g.data());
    for (float x : g) CHECK((x >= 0.8f && x <= 1.2f));
    synthetic_values("model.visual_abstractor.visual_fc.bias", {64}, 7, bias.data());
    for (float x : bias) CHECK(std::abs(x) <= 0.1f);
    synthetic_values("model.layers.0.self_attn.rotary_emb.inv_freq", {8}, 7, inv.data(), 10000.0);
    CHECK(inv[0] == 1.0f);
    CHECK(inv[1] == float(1.0 / std::pow(10000.0, 2.0 / 16.0)));
}

TEST_CASE("a synthetic checkpoint in memory holds the layout in the asked dtype", "[layout]") {
    const ModelConfig c = load_config(std::string(MPLUG_OWL2_REFERENCE_DIR) + "/tiny/config.json");
    auto src = synthetic_checkpoint(c, DType::BF16, 1);
    CHECK(src->names().size() == checkpoint_layout(c).size());
    const TensorInfo* t = src->find("model.layers.1.mlp.down_proj.weight");
    REQUIRE(t);
    CHECK(t->dtype == DType::BF16);
    CHECK(t->shape == Shape{64, 160});
    WeightLoader w(*src);
    auto m = w.matrix<float>("model.layers.1.mlp.down_proj.weight", 64, 160);
    std::vector<float> v(64 * 160);
    synthetic_values("model.layers.1.mlp.down_proj.weight", {64, 160}, 1, v.data());
    for (std::size_t i = 0; i < v.size(); ++i) REQUIRE(m.data()[i] == bf16_to_float(float_to_bf16(v[i])));
}
