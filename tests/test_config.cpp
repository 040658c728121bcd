// config.json parsing: the official defaults, the tiny reference config, and
// the impossible values and wrong types that must be refused by name.
#include <catch2/catch.hpp>

#include <fstream>

#include "mplug_owl2/io/config.hpp"

using namespace mplug_owl2;
using Catch::Contains;
using Catch::StartsWith;

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

namespace {

// The message of the mplug_owl2::Error that parsing `text` throws (any other
// exception fails the test).
std::string config_error(const std::string& text) {
    try {
        parse_config(text, "cfg/config.json");
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

// A config whose visual_config.<section> is `fields`, the other section empty.
std::string with_section(const std::string& section, const std::string& fields) {
    const bool vision = section == "visual_model";
    return R"({"visual_config": {"visual_model": )" + (vision ? fields : std::string("{}")) +
           R"(, "visual_abstractor": )" + (vision ? std::string("{}") : fields) + "}}";
}

}  // namespace

TEST_CASE("zero and negative sizes are refused by field name", "[config][errors]") {
    struct Case {
        std::string section, field, value, why;
    };
    const std::vector<Case> cases = {
        {"", "vocab_size", "0", "must be positive"},
        {"", "hidden_size", "0", "must be positive"},
        {"", "hidden_size", "-64", "must be positive"},
        {"", "intermediate_size", "0", "must be positive"},
        {"", "num_hidden_layers", "-1", "must not be negative"},
        {"", "num_attention_heads", "0", "must be positive"},
        {"", "num_key_value_heads", "0", "must be positive"},
        {"", "max_position_embeddings", "0", "must be positive"},
        {"", "rms_norm_eps", "0", "must be positive"},
        {"", "rope_theta", "-1.0", "must be positive"},
        {"", "pretraining_tp", "0", "must be at least 1"},
        {"visual_model", "hidden_size", "0", "must be positive"},
        {"visual_model", "intermediate_size", "-1", "must be positive"},
        {"visual_model", "num_hidden_layers", "-1", "must not be negative"},
        {"visual_model", "num_attention_heads", "0", "must be positive"},
        {"visual_model", "patch_size", "0", "must be positive"},
        {"visual_model", "image_size", "0", "must be at least patch_size"},
        {"visual_model", "layer_norm_eps", "0", "must be positive"},
        {"visual_abstractor", "num_learnable_queries", "0", "must be positive"},
        {"visual_abstractor", "hidden_size", "-4", "must be positive"},
        {"visual_abstractor", "num_hidden_layers", "-1", "must not be negative"},
        {"visual_abstractor", "num_attention_heads", "0", "must be positive"},
        {"visual_abstractor", "intermediate_size", "0", "must be positive"},
        {"visual_abstractor", "encoder_hidden_size", "0", "must be positive"},
        {"visual_abstractor", "grid_size", "-1", "must be positive"},
        {"visual_abstractor", "layer_norm_eps", "-0.5", "must be positive"},
    };
    for (const auto& c : cases) {
        const std::string fields = "{\"" + c.field + "\": " + c.value + "}";
        const std::string text = c.section.empty() ? fields : with_section(c.section, fields);
        const std::string path = c.section.empty() ? c.field : "visual_config." + c.section + "." + c.field;
        INFO(text);
        CHECK(config_error(text) == "cfg/config.json: config " + path + ": " + c.why);
    }
}

TEST_CASE("heads must divide the width in every part of the model", "[config][errors]") {
    CHECK(config_error(R"({"hidden_size": 100, "num_attention_heads": 3})") ==
          "cfg/config.json: config num_attention_heads: must divide hidden_size 100");
    CHECK(config_error(R"({"num_key_value_heads": 5})") ==
          "cfg/config.json: config num_key_value_heads: must divide num_attention_heads 32");
    CHECK(config_error(R"({"num_attention_heads": 8, "num_key_value_heads": 16})") ==
          "cfg/config.json: config num_key_value_heads: must divide num_attention_heads 8");
    CHECK(config_error(R"({"hidden_size": 96, "num_attention_heads": 32})") ==
          "cfg/config.json: config num_attention_heads: must leave an even head dimension for RoPE");
    CHECK(config_error(with_section("visual_model", R"({"hidden_size": 1000, "num_attention_heads": 16})")) ==
          "cfg/config.json: config visual_config.visual_model.num_attention_heads: must divide hidden_size 1000");
    CHECK(config_error(with_section("visual_abstractor", R"({"hidden_size": 1024, "num_attention_heads": 7})")) ==
          "cfg/config.json: config visual_config.visual_abstractor.num_attention_heads: must divide hidden_size 1024");
}

TEST_CASE("wrong JSON types are refused by field name with what was found", "[config][errors]") {
    CHECK(config_error(R"({"hidden_size": 4096.0})") == "cfg/config.json: hidden_size: expected an integer, found 4096.0");
    CHECK(config_error(R"({"hidden_size": true})") == "cfg/config.json: hidden_size: expected an integer, found true");
    CHECK(config_error(R"({"hidden_size": [4096]})") ==
          "cfg/config.json: hidden_size: expected an integer, found an array of 1 entries");
    CHECK(config_error(R"({"hidden_size": {"value": 4096}})") ==
          "cfg/config.json: hidden_size: expected an integer, found an object of 1 fields");
    CHECK(config_error(R"({"hidden_act": 3})") == "cfg/config.json: hidden_act: expected a string, found 3");
    CHECK(config_error(R"({"tie_word_embeddings": "false"})") ==
          "cfg/config.json: tie_word_embeddings: expected true or false, found \"false\"");
    CHECK(config_error(R"({"rms_norm_eps": "1e-6"})") == "cfg/config.json: rms_norm_eps: expected a finite number, found \"1e-6\"");
    CHECK(config_error(R"({"pad_token_id": 0.5})") == "cfg/config.json: pad_token_id: expected an integer, found 0.5");
    CHECK(config_error(R"({"eos_token_id": [2, "3"]})") ==
          "cfg/config.json: eos_token_id: expected an integer or a list of integers, found an array of 2 entries");
    CHECK(config_error(R"({"rope_scaling": "linear"})") ==
          "cfg/config.json: rope_scaling: expected an object with the two fields type and factor, found \"linear\"");
    CHECK(config_error(with_section("visual_model", R"({"image_size": "448"})")) ==
          "cfg/config.json: visual_config.visual_model.image_size: expected an integer, found \"448\"");
    CHECK(config_error(with_section("visual_abstractor", R"({"use_cls_token": 1})")) ==
          "cfg/config.json: visual_config.visual_abstractor.use_cls_token: expected true or false, found 1");
    CHECK(config_error(R"({"visual_config": {"visual_model": [], "visual_abstractor": {}}})") ==
          "cfg/config.json: config visual_config.visual_model: expected an object");
    CHECK(config_error(R"({"model_type": null, "hidden_size": null})") == "(no error)");  // null means the default
    // Numbers out of range: integers past 32 or 64 bits, floats past double.
    CHECK(config_error(R"({"hidden_size": 4294967360})") ==
          "cfg/config.json: hidden_size: expected a 32-bit integer, found 4294967360");
    CHECK(config_error(R"({"bos_token_id": 18446744073709551615})") ==
          "cfg/config.json: bos_token_id: expected a 64-bit integer, found 18446744073709551615");
    CHECK(config_error(R"({"rms_norm_eps": 1e999})") == "cfg/config.json: not valid JSON");  // nlohmann refuses overflow
    // A long string is cut in the message; a deeply nested value is described, not dumped.
    CHECK(config_error(R"({"hidden_act": ")" + std::string(500, 'x') + "\"}") ==
          "cfg/config.json: config hidden_act: unsupported activation " + std::string(500, 'x'));
    CHECK(config_error(R"({"hidden_size": ")" + std::string(500, 'y') + "\"}") ==
          "cfg/config.json: hidden_size: expected an integer, found \"" + std::string(76, 'y') + "...");
    const std::size_t deep = 200000;
    CHECK(config_error(R"({"hidden_size": )" + std::string(deep, '[') + std::string(deep, ']') + "}") ==
          "cfg/config.json: hidden_size: expected an integer, found an array of 1 entries");
    CHECK(config_error(R"({"unknown": )" + std::string(deep, '[') + std::string(deep, ']') + "}") == "(no error)");
}

TEST_CASE("the abstractor grid must match the vision encoder before any table is built", "[config][errors]") {
    CHECK(config_error(with_section("visual_abstractor", R"({"grid_size": 5})")) ==
          "cfg/config.json: config visual_config.visual_abstractor.grid_size: grid_size 5 gives 26 key positions, "
          "the vision encoder yields 1025 per image");
    CHECK(config_error(with_section("visual_abstractor", R"({"grid_size": 2000000000})")) ==
          "cfg/config.json: config visual_config.visual_abstractor.grid_size: grid_size 2000000000 gives "
          "4000000000000000001 key positions, the vision encoder yields 1025 per image");
    CHECK(config_error(with_section("visual_abstractor", R"({"use_cls_token": false})")) ==
          "cfg/config.json: config visual_config.visual_abstractor.grid_size: grid_size 32 gives 1024 key positions, "
          "the vision encoder yields 1025 per image");
    CHECK(config_error(with_section("visual_model", R"({"image_size": 2000000000, "patch_size": 1})")) ==
          "cfg/config.json: config visual_config.visual_model.image_size: image_size / patch_size is 2000000000 "
          "patches per side, more than 46340");
}

TEST_CASE("config files that are not configs are refused by path", "[config][errors]") {
    const std::string dir = MPLUG_OWL2_TEST_TMP;
    auto load_error = [](const std::string& path) {
        try {
            load_config(path);
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string("(no error)");
    };
    CHECK_THAT(load_error(dir + "/no_such_config.json"), StartsWith(dir + "/no_such_config.json: cannot open"));
    CHECK(load_error(dir) == dir + ": not a regular file");
    std::ofstream(dir + "/empty_config.json", std::ios::trunc).flush();
    CHECK(load_error(dir + "/empty_config.json") == dir + "/empty_config.json: not valid JSON");
    std::ofstream(dir + "/bad_config.json", std::ios::trunc) << "{\"hidden_size\": 64,}";
    CHECK(load_error(dir + "/bad_config.json") == dir + "/bad_config.json: not valid JSON");
    {
        std::ofstream out(dir + "/huge_config.json", std::ios::binary | std::ios::trunc);
        out.seekp(static_cast<std::streamoff>(kMaxConfigBytes));
        out << '}';
    }
    CHECK(load_error(dir + "/huge_config.json") ==
          dir + "/huge_config.json: 16777217 bytes, over the limit of 16777216 for a config.json");
}
