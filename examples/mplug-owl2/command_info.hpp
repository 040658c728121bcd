// `mplug-owl2 info --model DIR [--json]`: what a checkpoint folder holds.
//   - the model type and every size of the three stages (as config.json
//     gives them, with the official defaults filled in): the vision encoder,
//     the visual abstractor, the language decoder;
//   - the modality-specific parts: the decoder modules stored twice
//     (`multiway.0` for text, `multiway.1` for visual positions), in which
//     layers, and their parameters per modality;
//   - parameters (stored elements) per stage, without the buffers the model
//     recomputes (rotary_emb.inv_freq);
//   - the stored dtypes, and the memory the weights take as float (every
//     element in 4 bytes), as half (an fp16/bf16 checkpoint with
//     `--weights half`: 2-D weight matrices in 2 bytes, the rest in 4) and
//     as double;
//   - the weights' layout and files, and the other files of the folder.
// --json prints the same as one JSON object.
#pragma once

#include <CLI/CLI.hpp>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "mplug_owl2/io/checkpoint.hpp"
#include "mplug_owl2/io/config.hpp"

namespace cli {

inline bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }
inline bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The stage a tensor belongs to, by its official name.
inline std::string stage_of(const std::string& name) {
    static const std::pair<const char*, const char*> stages[] = {
        {"model.vision_model.", "vision_encoder"}, {"model.visual_abstractor.", "visual_abstractor"},
        {"model.embed_tokens.", "embed_tokens"},   {"model.layers.", "decoder_layers"},
        {"model.norm.", "norm"},                   {"lm_head.", "lm_head"}};
    for (const auto& s : stages)
        if (starts_with(name, s.first)) return s.second;
    return "other";
}

inline nlohmann::json model_info(const std::string& dir) {
    using namespace mplug_owl2;
    namespace fs = std::filesystem;
    const ModelConfig c = load_config(dir + "/config.json");
    const auto& t = c.text;
    const auto& v = c.vision;
    const auto& a = c.abstractor;
    nlohmann::json j;
    j["model_dir"] = dir;
    j["model_type"] = c.model_type;
    {
        std::ifstream in(dir + "/config.json");
        const nlohmann::json raw = nlohmann::json::parse(in);
        j["architectures"] = raw.contains("architectures") ? raw["architectures"] : nlohmann::json::array();
    }
    // 1. the sizes
    j["vision_encoder"] = {{"layers", v.num_hidden_layers}, {"hidden_size", v.hidden_size},
                           {"intermediate_size", v.intermediate_size}, {"attention_heads", v.num_attention_heads},
                           {"head_dim", v.head_dim()}, {"hidden_act", v.hidden_act}, {"image_size", v.image_size},
                           {"patch_size", v.patch_size}, {"patches", v.num_patches()}, {"positions", v.seq_len()},
                           {"layer_norm_eps", v.layer_norm_eps}};
    j["visual_abstractor"] = {{"layers", a.num_hidden_layers}, {"hidden_size", a.hidden_size},
                              {"intermediate_size", a.intermediate_size}, {"attention_heads", a.num_attention_heads},
                              {"head_dim", a.head_dim()}, {"queries", a.num_learnable_queries},
                              {"encoder_hidden_size", a.encoder_hidden_size}, {"grid_size", a.grid_size},
                              {"layer_norm_eps", a.layer_norm_eps}};
    j["language_decoder"] = {{"layers", t.num_hidden_layers}, {"hidden_size", t.hidden_size},
                             {"intermediate_size", t.intermediate_size}, {"attention_heads", t.num_attention_heads},
                             {"key_value_heads", t.num_key_value_heads}, {"head_dim", t.head_dim()},
                             {"hidden_act", t.hidden_act}, {"vocab_size", t.vocab_size},
                             {"max_position_embeddings", t.max_position_embeddings}, {"rms_norm_eps", t.rms_norm_eps},
                             {"rope_theta", t.rope_theta}, {"tie_word_embeddings", t.tie_word_embeddings}};

    // 2. the tensors: per stage, per dtype, the modality-specific ones, per file
    const auto weights = open_checkpoint(dir);
    std::map<std::string, std::size_t> per_stage{{"vision_encoder", 0}, {"visual_abstractor", 0}, {"embed_tokens", 0},
                                                 {"decoder_layers", 0}, {"norm", 0},            {"lm_head", 0}};
    std::map<std::string, std::pair<std::size_t, std::size_t>> per_dtype;  // tensors, bytes
    std::map<std::string, std::size_t> per_file;                           // tensors
    std::set<std::string> multiway_parts;
    std::set<int> multiway_layers;
    std::size_t multiway = 0, total = 0, as_half = 0, as_float = 0;
    for (const std::string& name : weights->names()) {
        const TensorInfo* info = weights->find(name);
        const std::size_t n = shape_numel(info->shape);
        auto& d = per_dtype[dtype_name(info->dtype)];
        ++d.first;
        d.second += info->nbytes;
        ++per_file[fs::path(weights->origin(name)).filename().string()];
        if (ends_with(name, "rotary_emb.inv_freq")) continue;
        per_stage[stage_of(name)] += n;
        total += n;
        (info->shape.size() == 2 && ends_with(name, ".weight") ? as_half : as_float) += n;
        // model.layers.<i>.<part>.multiway.1.<...>: the visual copy of a part of layer i
        if (starts_with(name, "model.layers.") && name.find(".multiway.1.") != std::string::npos) {
            const std::string rest = name.substr(std::string("model.layers.").size());
            const std::string in_layer = rest.substr(rest.find('.') + 1);
            multiway_layers.insert(std::stoi(rest));
            multiway_parts.insert(in_layer.substr(0, in_layer.find(".multiway.")));
            multiway += n;
        }
    }
    if (per_stage.count("other") && per_stage["other"] == 0) per_stage.erase("other");
    per_stage["total"] = total;
    j["parameters"] = per_stage;
    j["modality_adaptive"] = {{"parts", multiway_parts},
                              {"layers", multiway_layers},
                              {"parameters_per_modality", multiway}};
    for (const auto& d : per_dtype) j["stored_dtypes"][d.first] = {{"tensors", d.second.first}, {"bytes", d.second.second}};
    j["weights_memory_bytes"] = {{"float", 4 * total}, {"half", 2 * as_half + 4 * as_float}, {"double", 8 * total}};

    // 3. the files
    j["layout"] = layout_name(locate_checkpoint(dir).layout);
    j["files"] = nlohmann::json::array();
    std::set<std::string> names;
    for (const auto& e : fs::directory_iterator(dir))
        if (e.is_regular_file()) names.insert(e.path().filename().string());
    for (const std::string& name : names) {
        nlohmann::json f = {{"name", name}, {"bytes", fs::file_size(fs::path(dir) / name)}};
        if (per_file.count(name)) f["tensors"] = per_file[name];
        j["files"].push_back(f);
    }
    return j;
}

inline std::string megabytes(std::size_t bytes) {
    std::ostringstream s;
    const bool large = bytes >= std::size_t(1000000000);
    s.precision(large ? 4 : 3);
    if (large)
        s << double(bytes) / 1e9 << " GB";
    else
        s << double(bytes) / 1e6 << " MB";
    return s.str();
}

inline void print_info(const nlohmann::json& j, std::ostream& out) {
    const auto& v = j["vision_encoder"];
    const auto& a = j["visual_abstractor"];
    const auto& t = j["language_decoder"];
    const auto& m = j["modality_adaptive"];
    const auto& p = j["parameters"];
    out << "model: " << j["model_type"].get<std::string>();
    for (const auto& arch : j["architectures"]) out << " (" << arch.get<std::string>() << ")";
    out << ", in " << j["model_dir"].get<std::string>() << "\n";
    out << "vision encoder: " << v["layers"] << " layers, width " << v["hidden_size"] << ", " << v["attention_heads"]
        << " heads of " << v["head_dim"] << ", MLP " << v["intermediate_size"] << " (" << v["hidden_act"].get<std::string>()
        << "); images of " << v["image_size"] << " px in patches of " << v["patch_size"] << ": " << v["patches"]
        << " patches, " << v["positions"] << " positions\n";
    out << "visual abstractor: " << a["layers"] << " layers, " << a["queries"] << " queries, width " << a["hidden_size"]
        << ", " << a["attention_heads"] << " heads of " << a["head_dim"] << ", MLP " << a["intermediate_size"]
        << ", reading width " << a["encoder_hidden_size"] << "\n";
    out << "language decoder: " << t["layers"] << " layers, width " << t["hidden_size"] << ", " << t["attention_heads"]
        << " heads of " << t["head_dim"] << " (" << t["key_value_heads"] << " key/value heads), MLP "
        << t["intermediate_size"] << " (" << t["hidden_act"].get<std::string>() << "), vocabulary " << t["vocab_size"]
        << ", context " << t["max_position_embeddings"] << ", rope_theta " << t["rope_theta"].get<double>() << "\n";
    out << "modality-adaptive module: ";
    if (m["parts"].empty()) {
        out << "none stored\n";
    } else {
        std::string parts;
        for (const auto& part : m["parts"]) parts += (parts.empty() ? "" : ", ") + part.get<std::string>();
        out << parts << " stored twice (text, visual) in " << m["layers"].size() << " decoder layers, "
            << m["parameters_per_modality"] << " parameters per modality\n";
    }
    out << "parameters:";
    for (const char* k : {"vision_encoder", "visual_abstractor", "embed_tokens", "decoder_layers", "norm", "lm_head",
                          "other", "total"})
        if (p.contains(k)) out << " " << k << " " << p[k];
    out << "\n";
    out << "stored dtypes:";
    for (auto it = j["stored_dtypes"].begin(); it != j["stored_dtypes"].end(); ++it)
        out << " " << it.key() << " (" << it.value()["tensors"] << " tensors, " << megabytes(it.value()["bytes"]) << ")";
    out << "\n";
    const auto& mem = j["weights_memory_bytes"];
    out << "memory for the weights: float " << megabytes(mem["float"]) << ", half " << megabytes(mem["half"])
        << " (2-D weight matrices in 2 bytes), double " << megabytes(mem["double"]) << "\n";
    out << "layout: " << j["layout"].get<std::string>() << "\n";
    out << "files:\n";
    for (const auto& f : j["files"]) {
        out << "  " << f["name"].get<std::string>() << "  " << f["bytes"] << " bytes";
        if (f.contains("tensors")) out << ", " << f["tensors"] << " tensors";
        out << "\n";
    }
}

inline void register_info(CLI::App& app) {
    auto* sub = app.add_subcommand("info", "Show the sizes, parameters, memory and files of a checkpoint folder");
    auto dir = std::make_shared<std::string>();
    auto json = std::make_shared<bool>(false);
    sub->add_option("--model", *dir, "checkpoint folder (config.json + weights)")->required();
    sub->add_flag("--json", *json, "print the same as one JSON object");
    sub->callback([dir, json] {
        const nlohmann::json j = model_info(*dir);
        if (*json)
            std::cout << j.dump(2) << "\n";
        else
            print_info(j, std::cout);
    });
}

}  // namespace cli
