// config.json of the published checkpoint layout, as typed structs with the
// official defaults (configuration_mplug_owl2.py) for every field the
// official modeling code reads. The LLaMA fields sit at the top level, the
// vision encoder's under visual_config.visual_model and the abstractor's
// under visual_config.visual_abstractor.
#pragma once

#include <cmath>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "mapped_file.hpp"

namespace mplug_owl2 {

// `visual_config.visual_model` (MplugOwlVisionConfig).
struct VisionConfig {
    int hidden_size = 1024;
    int intermediate_size = 4096;
    int projection_dim = 768;  // read by the official config, unused by the forward pass
    int num_hidden_layers = 24;
    int num_attention_heads = 16;
    int num_channels = 3;      // the patch embedding is built for 3 channels whatever this says
    int image_size = 448;
    int patch_size = 14;
    std::string hidden_act = "quick_gelu";
    double layer_norm_eps = 1e-6;
    double attention_dropout = 0.0;  // inference: no dropout
    bool use_flash_attn = false;     // the official code never takes the flash path
    bool use_post_layernorm = true;
    bool use_cls_token = true;

    int grid() const { return image_size / patch_size; }
    int num_patches() const { return grid() * grid(); }
    // Rows of the vision output per image: the patches, plus CLS when used.
    int seq_len() const { return use_cls_token ? num_patches() + 1 : num_patches(); }
    int head_dim() const { return hidden_size / num_attention_heads; }
};

// `visual_config.visual_abstractor` (MplugOwlVisualAbstractorConfig).
struct AbstractorConfig {
    bool add_v2t_pos_emb = false;  // read by the official config, unused by its forward pass
    bool use_cls_token = true;
    int num_learnable_queries = 64;
    int hidden_size = 1024;
    int num_hidden_layers = 6;
    int num_attention_heads = 16;
    int intermediate_size = 2816;
    double attention_probs_dropout_prob = 0.0;  // inference: no dropout
    double layer_norm_eps = 1e-6;
    int encoder_hidden_size = 1024;
    int grid_size = 32;  // a missing, null or 0 value means 32, as in the official config

    int head_dim() const { return hidden_size / num_attention_heads; }
};

struct RopeScaling {
    std::string type;  // "linear" or "dynamic"
    double factor = 1.0;
};

// The LLaMA-2 fields at the top level of config.json (LlamaConfig).
struct TextConfig {
    int vocab_size = 32000;
    int hidden_size = 4096;
    int intermediate_size = 11008;
    int num_hidden_layers = 32;
    int num_attention_heads = 32;
    int num_key_value_heads = 32;  // defaults to num_attention_heads
    std::string hidden_act = "silu";
    int max_position_embeddings = 2048;
    double rms_norm_eps = 1e-6;
    bool use_cache = true;
    std::optional<long long> pad_token_id;
    long long bos_token_id = 1;
    std::vector<long long> eos_token_id = {2};  // an int or a list in config.json
    int pretraining_tp = 1;  // splits the projections into slices: the same math, summed in another order
    bool tie_word_embeddings = false;
    double rope_theta = 10000.0;
    std::optional<RopeScaling> rope_scaling;
    bool attention_bias = false;

    int head_dim() const { return hidden_size / num_attention_heads; }
};

struct ModelConfig {
    std::string model_type = "mplug_owl2";
    TextConfig text;
    VisionConfig vision;
    AbstractorConfig abstractor;
    std::optional<std::string> image_aspect_ratio;  // "pad" or "resize" when the checkpoint says
};

namespace config_detail {

// Typed access to one JSON object, with the field's path in every error.
class Fields {
public:
    Fields(const nlohmann::json& j, std::string where) : j_(j), where_(std::move(where)) {}

    bool present(const char* key) const { return j_.contains(key) && !j_[key].is_null(); }

    void get(const char* key, int& out) const {
        if (!present(key)) return;
        const auto& v = j_[key];
        if (!v.is_number_integer()) bad(key, "an integer", v);
        const auto x = v.get<long long>();
        if (x < -2147483647LL || x > 2147483647LL) bad(key, "a 32-bit integer", v);
        out = static_cast<int>(x);
    }
    void get(const char* key, long long& out) const {
        if (!present(key)) return;
        const auto& v = j_[key];
        if (!v.is_number_integer()) bad(key, "an integer", v);
        if (v.is_number_unsigned() && v.get<unsigned long long>() > 9223372036854775807ULL)
            bad(key, "a 64-bit integer", v);
        out = v.get<long long>();
    }
    void get(const char* key, double& out) const {
        if (!present(key)) return;
        const auto& v = j_[key];
        if (!v.is_number() || !std::isfinite(v.get<double>())) bad(key, "a finite number", v);
        out = v.get<double>();
    }
    void get(const char* key, bool& out) const {
        if (!present(key)) return;
        const auto& v = j_[key];
        if (!v.is_boolean()) bad(key, "true or false", v);
        out = v.get<bool>();
    }
    void get(const char* key, std::string& out) const {
        if (!present(key)) return;
        const auto& v = j_[key];
        if (!v.is_string()) bad(key, "a string", v);
        out = v.get<std::string>();
    }

    [[noreturn]] void bad(const std::string& key, const std::string& expected, const nlohmann::json& v) const {
        fail(where_, key, ": expected ", expected, ", found ", describe(v));
    }
    // A found value for a message: scalars as written (long strings cut),
    // arrays and objects by their size, never dumped whole (a deeply nested
    // one would exhaust the stack in dump()).
    static std::string describe(const nlohmann::json& v) {
        if (v.is_array()) return "an array of " + std::to_string(v.size()) + " entries";
        if (v.is_object()) return "an object of " + std::to_string(v.size()) + " fields";
        std::string s = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        if (s.size() > 80) s = s.substr(0, 77) + "...";
        return s;
    }
    std::string path(const std::string& key) const { return where_ + key; }

private:
    const nlohmann::json& j_;
    std::string where_;
};

inline void require(bool ok, const std::string& field, const std::string& why) {
    if (!ok) fail("config ", field, ": ", why);
}

inline bool known_activation(const std::string& a) {
    static const std::set<std::string> acts = {"silu", "swish", "gelu", "gelu_new", "gelu_pytorch_tanh",
                                               "quick_gelu", "relu"};
    return acts.count(a) != 0;
}

inline VisionConfig parse_vision(const nlohmann::json& j) {
    VisionConfig c;
    Fields f(j, "visual_config.visual_model.");
    f.get("hidden_size", c.hidden_size);
    f.get("intermediate_size", c.intermediate_size);
    f.get("projection_dim", c.projection_dim);
    f.get("num_hidden_layers", c.num_hidden_layers);
    f.get("num_attention_heads", c.num_attention_heads);
    f.get("num_channels", c.num_channels);
    f.get("image_size", c.image_size);
    f.get("patch_size", c.patch_size);
    f.get("hidden_act", c.hidden_act);
    f.get("layer_norm_eps", c.layer_norm_eps);
    f.get("attention_dropout", c.attention_dropout);
    f.get("use_flash_attn", c.use_flash_attn);
    f.get("use_post_layernorm", c.use_post_layernorm);
    f.get("use_cls_token", c.use_cls_token);
    const std::string p = "visual_config.visual_model.";
    require(c.hidden_size > 0, p + "hidden_size", "must be positive");
    require(c.intermediate_size > 0, p + "intermediate_size", "must be positive");
    require(c.num_hidden_layers >= 0, p + "num_hidden_layers", "must not be negative");
    require(c.num_attention_heads > 0, p + "num_attention_heads", "must be positive");
    require(c.hidden_size % c.num_attention_heads == 0, p + "num_attention_heads",
            "must divide hidden_size " + std::to_string(c.hidden_size));
    require(c.patch_size > 0, p + "patch_size", "must be positive");
    require(c.image_size >= c.patch_size, p + "image_size", "must be at least patch_size");
    // The patch count is an int: at most 46340 patches per side.
    require(c.grid() <= 46340, p + "image_size",
            "image_size / patch_size is " + std::to_string(c.grid()) + " patches per side, more than 46340");
    require(c.num_channels == 3, p + "num_channels", "must be 3 (the patch embedding reads RGB)");
    require(c.layer_norm_eps > 0, p + "layer_norm_eps", "must be positive");
    require(known_activation(c.hidden_act), p + "hidden_act", "unsupported activation " + c.hidden_act);
    if (!c.use_cls_token)
        require(std::abs(std::sqrt(double(c.num_patches())) - c.grid()) < 1e-9, p + "image_size",
                "with use_cls_token false the patch grid must be square");
    return c;
}

inline AbstractorConfig parse_abstractor(const nlohmann::json& j) {
    AbstractorConfig c;
    Fields f(j, "visual_config.visual_abstractor.");
    f.get("add_v2t_pos_emb", c.add_v2t_pos_emb);
    f.get("use_cls_token", c.use_cls_token);
    f.get("num_learnable_queries", c.num_learnable_queries);
    f.get("hidden_size", c.hidden_size);
    f.get("num_hidden_layers", c.num_hidden_layers);
    f.get("num_attention_heads", c.num_attention_heads);
    f.get("intermediate_size", c.intermediate_size);
    f.get("attention_probs_dropout_prob", c.attention_probs_dropout_prob);
    f.get("layer_norm_eps", c.layer_norm_eps);
    f.get("encoder_hidden_size", c.encoder_hidden_size);
    f.get("grid_size", c.grid_size);
    if (c.grid_size == 0) c.grid_size = 32;  // the official `grid_size if grid_size else 32`
    const std::string p = "visual_config.visual_abstractor.";
    require(c.num_learnable_queries > 0, p + "num_learnable_queries", "must be positive");
    require(c.hidden_size > 0, p + "hidden_size", "must be positive");
    require(c.hidden_size % 4 == 0, p + "hidden_size", "must be a multiple of 4 (the 2-D sin-cos table)");
    require(c.num_hidden_layers >= 0, p + "num_hidden_layers", "must not be negative");
    require(c.num_attention_heads > 0, p + "num_attention_heads", "must be positive");
    require(c.hidden_size % c.num_attention_heads == 0, p + "num_attention_heads",
            "must divide hidden_size " + std::to_string(c.hidden_size));
    require(c.intermediate_size > 0, p + "intermediate_size", "must be positive");
    require(c.encoder_hidden_size > 0, p + "encoder_hidden_size", "must be positive");
    require(c.grid_size > 0, p + "grid_size", "must be positive");
    require(c.layer_norm_eps > 0, p + "layer_norm_eps", "must be positive");
    return c;
}

inline TextConfig parse_text(const nlohmann::json& j) {
    TextConfig c;
    Fields f(j, "");
    f.get("vocab_size", c.vocab_size);
    f.get("hidden_size", c.hidden_size);
    f.get("intermediate_size", c.intermediate_size);
    f.get("num_hidden_layers", c.num_hidden_layers);
    f.get("num_attention_heads", c.num_attention_heads);
    c.num_key_value_heads = c.num_attention_heads;
    f.get("num_key_value_heads", c.num_key_value_heads);
    f.get("hidden_act", c.hidden_act);
    f.get("max_position_embeddings", c.max_position_embeddings);
    f.get("rms_norm_eps", c.rms_norm_eps);
    f.get("use_cache", c.use_cache);
    if (f.present("pad_token_id")) {
        long long v = 0;
        f.get("pad_token_id", v);
        c.pad_token_id = v;
    }
    f.get("bos_token_id", c.bos_token_id);
    if (f.present("eos_token_id")) {
        const auto& e = j["eos_token_id"];
        c.eos_token_id.clear();
        if (e.is_number_integer()) {
            c.eos_token_id.push_back(e.get<long long>());
        } else if (e.is_array()) {
            for (const auto& x : e) {
                if (!x.is_number_integer()) f.bad("eos_token_id", "an integer or a list of integers", e);
                c.eos_token_id.push_back(x.get<long long>());
            }
        } else {
            f.bad("eos_token_id", "an integer or a list of integers", e);
        }
    }
    f.get("pretraining_tp", c.pretraining_tp);
    f.get("tie_word_embeddings", c.tie_word_embeddings);
    f.get("rope_theta", c.rope_theta);
    f.get("attention_bias", c.attention_bias);
    if (f.present("rope_scaling")) {
        // The official validation: a dict of exactly {type, factor}, type
        // linear or dynamic, factor a float > 1.
        const auto& r = j["rope_scaling"];
        if (!r.is_object() || r.size() != 2)
            f.bad("rope_scaling", "an object with the two fields type and factor", r);
        RopeScaling s;
        Fields rf(r, "rope_scaling.");
        rf.get("type", s.type);
        require(s.type == "linear" || s.type == "dynamic", "rope_scaling.type",
                "must be linear or dynamic, found " +
                    (r.contains("type") ? config_detail::Fields::describe(r["type"]) : std::string("nothing")));
        if (!r.contains("factor") || !r["factor"].is_number_float())
            rf.bad("factor", "a float > 1", r.contains("factor") ? r["factor"] : nlohmann::json());
        s.factor = r["factor"].get<double>();
        require(s.factor > 1.0, "rope_scaling.factor", "must be a float > 1, found " + std::to_string(s.factor));
        c.rope_scaling = s;
    }
    require(c.vocab_size > 0, "vocab_size", "must be positive");
    require(c.hidden_size > 0, "hidden_size", "must be positive");
    require(c.intermediate_size > 0, "intermediate_size", "must be positive");
    require(c.num_hidden_layers >= 0, "num_hidden_layers", "must not be negative");
    require(c.num_attention_heads > 0, "num_attention_heads", "must be positive");
    require(c.hidden_size % c.num_attention_heads == 0, "num_attention_heads",
            "must divide hidden_size " + std::to_string(c.hidden_size));
    require(c.head_dim() % 2 == 0, "num_attention_heads", "must leave an even head dimension for RoPE");
    require(c.num_key_value_heads > 0, "num_key_value_heads", "must be positive");
    require(c.num_attention_heads % c.num_key_value_heads == 0, "num_key_value_heads",
            "must divide num_attention_heads " + std::to_string(c.num_attention_heads));
    require(c.max_position_embeddings > 0, "max_position_embeddings", "must be positive");
    require(c.rms_norm_eps > 0, "rms_norm_eps", "must be positive");
    require(c.rope_theta > 0, "rope_theta", "must be positive");
    require(c.pretraining_tp >= 1, "pretraining_tp", "must be at least 1");
    require(known_activation(c.hidden_act), "hidden_act", "unsupported activation " + c.hidden_act);
    return c;
}

}  // namespace config_detail

// Parses the text of a config.json; `origin` names it in error messages.
inline ModelConfig parse_config(const std::string& text, const std::string& origin = "config.json") {
    nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) fail(origin, ": not valid JSON");
    if (!j.is_object()) fail(origin, ": expected a JSON object at the top level");
    try {
        ModelConfig c;
        config_detail::Fields f(j, "");
        f.get("model_type", c.model_type);
        if (f.present("image_aspect_ratio")) {
            std::string a;
            f.get("image_aspect_ratio", a);
            config_detail::require(a == "pad" || a == "resize" || a == "square", "image_aspect_ratio",
                                   "must be pad, resize or square, found " + a);
            c.image_aspect_ratio = a;
        }
        c.text = config_detail::parse_text(j);
        if (f.present("visual_config")) {
            const auto& v = j["visual_config"];
            if (!v.is_object()) f.bad("visual_config", "an object", v);
            // The official MPLUGOwl2Config takes visual_config as given: both
            // sub-objects must be there, each filled up with its defaults.
            if (!v.contains("visual_model") || !v["visual_model"].is_object())
                fail("config visual_config.visual_model: expected an object");
            if (!v.contains("visual_abstractor") || !v["visual_abstractor"].is_object())
                fail("config visual_config.visual_abstractor: expected an object");
            c.vision = config_detail::parse_vision(v["visual_model"]);
            c.abstractor = config_detail::parse_abstractor(v["visual_abstractor"]);
        }
        config_detail::require(c.abstractor.encoder_hidden_size == c.vision.hidden_size,
                               "visual_config.visual_abstractor.encoder_hidden_size",
                               "must equal the vision hidden_size " + std::to_string(c.vision.hidden_size));
        // The abstractor's key positions (grid_size², plus CLS) are added to
        // the vision output row by row: their counts must agree, checked here
        // before a table of grid_size² rows is ever built.
        const long long keys = static_cast<long long>(c.abstractor.grid_size) * c.abstractor.grid_size +
                               (c.abstractor.use_cls_token ? 1 : 0);
        config_detail::require(keys == c.vision.seq_len(), "visual_config.visual_abstractor.grid_size",
                               "grid_size " + std::to_string(c.abstractor.grid_size) + " gives " +
                                   std::to_string(keys) + " key positions, the vision encoder yields " +
                                   std::to_string(c.vision.seq_len()) + " per image");
        return c;
    } catch (const Error& e) {
        fail(origin, ": ", e.what());
    }
}

// A config.json is a few kilobytes; anything past this limit is not one.
constexpr std::size_t kMaxConfigBytes = std::size_t(16) << 20;

inline ModelConfig load_config(const std::string& path) {
    MappedFile file(path);
    if (file.size() > kMaxConfigBytes)
        fail(path, ": ", file.size(), " bytes, over the limit of ", kMaxConfigBytes, " for a config.json");
    return parse_config(std::string(reinterpret_cast<const char*>(file.data()), file.size()), path);
}

}  // namespace mplug_owl2
