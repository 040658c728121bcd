// config.json parsing: the official defaults, the tiny reference config, and
// the impossible values and wrong types that must be refused by name.
#include <catch2/catch.hpp>

#include "mplug_owl2/io/config.hpp"

using namespace mplug_owl2;
using Catch::Contains;

TEST_CASE("an empty config gets the official defaults", "[config]") {
    const ModelConfig c = parse_config("{}");
    CHECK(c.text.vocab_size == 32000);
    CHECK(c.text.hidden_size == 4096);
    CHECK(c.text.intermediate_size == 11008);
    CHECK(c.text.num_hidden_layers == 32);
    CHECK(c.text.num_attention_heads == 32);
    CHECK(c.text.num_key_value_heads == 32);
    CHECK(c.text.max_position_embeddings == 2048);
    CHECK(c.text.rms_norm_eps == 1e-6);
    CHECK(c.text.rope_theta == 10000.0);
    CHECK_FALSE(c.text.rope_scaling.has_value());
    CHECK_FALSE(c.text.attention_bias);
    CHECK_FALSE(c.text.tie_word_embeddings);
    CHECK(c.text.bos_token_id == 1);
    CHECK(c.text.eos_token_id == std::vector<long long>{2});
    CHECK(c.text.hidden_act == "silu");
    CHECK(c.vision.hidden_size == 1024);
    CHECK(c.vision.num_hidden_layers == 24);
    CHECK(c.vision.num_attention_heads == 16);
    CHECK(c.vision.intermediate_size == 4096);
    CHECK(c.vision.image_size == 448);
    CHECK(c.vision.patch_size == 14);
    CHECK(c.vision.seq_len() == 1025);
    CHECK(c.vision.hidden_act == "quick_gelu");
    CHECK(c.vision.layer_norm_eps == 1e-6);
    CHECK(c.vision.use_cls_token);
    CHECK(c.vision.use_post_layernorm);
    CHECK(c.abstractor.num_learnable_queries == 64);
    CHECK(c.abstractor.num_hidden_layers == 6);
    CHECK(c.abstractor.num_attention_heads == 16);
    CHECK(c.abstractor.intermediate_size == 2816);
    CHECK(c.abstractor.grid_size == 32);
    CHECK(c.abstractor.encoder_hidden_size == 1024);
    CHECK_FALSE(c.image_aspect_ratio.has_value());
}

TEST_CASE("the tiny reference config parses field by field", "[config]") {
    const ModelConfig c = load_config(std::string(MPLUG_OWL2_REFERENCE_DIR) + "/tiny/config.json");
    CHECK(c.model_type == "mplug_owl2");
    CHECK(c.text.vocab_size == 320);
    CHECK(c.text.hidden_size == 64);
    CHECK(c.text.intermediate_size == 160);
    CHECK(c.text.num_hidden_layers == 2);
    CHECK(c.text.num_attention_heads == 4);
    CHECK(c.text.head_dim() == 16);
    CHECK(c.text.pad_token_id == 0LL);
    CHECK(c.vision.hidden_size == 64);
    CHECK(c.vision.image_size == 56);
    CHECK(c.vision.grid() == 4);
    CHECK(c.vision.seq_len() == 17);
    CHECK(c.abstractor.num_learnable_queries == 8);
    CHECK(c.abstractor.intermediate_size == 96);
    CHECK(c.abstractor.grid_size == 4);
}

TEST_CASE("visual_config sub-objects are filled with their own defaults", "[config]") {
    const ModelConfig c = parse_config(
        R"({"visual_config": {"visual_model": {"hidden_size": 32, "num_attention_heads": 2},
                              "visual_abstractor": {"encoder_hidden_size": 32, "grid_size": null}}})");
    CHECK(c.vision.hidden_size == 32);
    CHECK(c.vision.intermediate_size == 4096);
    CHECK(c.abstractor.grid_size == 32);  // null means the default, as `grid_size if grid_size else 32`
    CHECK(c.abstractor.hidden_size == 1024);
}

TEST_CASE("rope_scaling and eos lists are read as the official config reads them", "[config]") {
    const ModelConfig c = parse_config(R"({"rope_scaling": {"type": "dynamic", "factor": 2.0}, "eos_token_id": [2, 7]})");
    REQUIRE(c.text.rope_scaling.has_value());
    CHECK(c.text.rope_scaling->type == "dynamic");
    CHECK(c.text.rope_scaling->factor == 2.0);
    CHECK(c.text.eos_token_id == std::vector<long long>{2, 7});
    CHECK(parse_config(R"({"num_attention_heads": 8, "hidden_size": 64, "num_key_value_heads": 2})").text.num_key_value_heads == 2);
}

TEST_CASE("impossible values and wrong types are refused by field name", "[config]") {
    CHECK_THROWS_WITH(parse_config(R"({"hidden_size": 100, "num_attention_heads": 3})"),
                      Contains("num_attention_heads") && Contains("divide hidden_size 100"));
    CHECK_THROWS_WITH(parse_config(R"({"num_key_value_heads": 5})"), Contains("num_key_value_heads"));
    CHECK_THROWS_WITH(parse_config(R"({"hidden_size": "4096"})"), Contains("hidden_size: expected an integer"));
    CHECK_THROWS_WITH(parse_config(R"({"rms_norm_eps": -1.0})"), Contains("rms_norm_eps"));
    CHECK_THROWS_WITH(parse_config(R"({"attention_bias": 1})"), Contains("attention_bias: expected true or false"));
    CHECK_THROWS_WITH(parse_config(R"({"hidden_act": "mish"})"), Contains("hidden_act") && Contains("mish"));
    CHECK_THROWS_WITH(parse_config(R"({"rope_scaling": {"type": "yarn", "factor": 2.0}})"), Contains("rope_scaling.type"));
    CHECK_THROWS_WITH(parse_config(R"({"rope_scaling": {"type": "linear", "factor": 2}})"), Contains("factor"));
    CHECK_THROWS_WITH(parse_config(R"({"rope_scaling": {"type": "linear", "factor": 0.5}})"), Contains("rope_scaling.factor"));
    CHECK_THROWS_WITH(parse_config(R"({"rope_scaling": {"type": "linear"}})"), Contains("rope_scaling"));
    CHECK_THROWS_WITH(parse_config(R"({"eos_token_id": "2"})"), Contains("eos_token_id"));
    CHECK_THROWS_WITH(parse_config(R"({"vocab_size": 0})"), Contains("vocab_size"));
    CHECK_THROWS_WITH(parse_config(R"({"image_aspect_ratio": "crop"})"), Contains("image_aspect_ratio"));
    CHECK_THROWS_WITH(parse_config("[1]"), Contains("JSON object"));
    CHECK_THROWS_WITH(parse_config("{", "my/config.json"), Contains("my/config.json") && Contains("not valid JSON"));
    CHECK_THROWS_WITH(load_config("/nonexistent/config.json"), Contains("/nonexistent/config.json"));
}

TEST_CASE("vision and abstractor fields are validated with their paths", "[config]") {
    const auto with_vision = [](const std::string& v) {
        return R"({"visual_config": {"visual_model": )" + v + R"(, "visual_abstractor": {}}})";
    };
    CHECK_THROWS_WITH(parse_config(with_vision(R"({"hidden_size": 1000})")),
                      Contains("visual_config.visual_model.num_attention_heads"));
    CHECK_THROWS_WITH(parse_config(with_vision(R"({"patch_size": 500})")), Contains("visual_config.visual_model.image_size"));
    CHECK_THROWS_WITH(parse_config(with_vision(R"({"use_cls_token": "yes"})")), Contains("use_cls_token"));
    CHECK_THROWS_WITH(parse_config(R"({"visual_config": {"visual_model": {}, "visual_abstractor": {"num_attention_heads": 7}}})"),
                      Contains("visual_config.visual_abstractor.num_attention_heads"));
    CHECK_THROWS_WITH(parse_config(R"({"visual_config": {"visual_model": {}, "visual_abstractor": {"encoder_hidden_size": 512}}})"),
                      Contains("encoder_hidden_size"));
    CHECK_THROWS_WITH(parse_config(R"({"visual_config": {"visual_model": {}}})"), Contains("visual_abstractor"));
    CHECK_THROWS_WITH(parse_config(R"({"visual_config": 3})"), Contains("visual_config"));
}
