// `mplug-owl2 synth-checkpoint`: a random-weight checkpoint folder in the
// published layout, to run the program at the release's size without the
// download (or at a small size in tests):
//   config.json              model_type mplug_owl2, the LLaMA fields at the top
//                            level, visual_config.visual_model / .visual_abstractor
//   preprocessor_config.json CLIP's settings at the model's image_size
//   the weights              every tensor of io/checkpoint_layout.hpp with the
//                            release's extras (each layer's rotary_emb.inv_freq,
//                            the abstractor's sin-cos tables), one shard per
//                            decoder layer plus one (33 for the 7B, with the
//                            index file) or one file, .bin or .safetensors
//   tokenizer.model          only with --tokenizer (a real one cannot be made)
// Weights are io/synthetic.hpp's deterministic values, except the sin-cos
// tables, which are those the abstractor computes (abstractor/sincos_pos_embed.hpp),
// so that stored and rebuilt tables agree as in the release. Tensors are made
// one at a time while the shards are written, so memory stays at about the
// largest tensor, whatever the model's size. Every file is written through a
// temporary name and renamed when complete, config.json last; when a write
// fails, the files this run added (and the folder, if it made it) are removed.
#pragma once

#include <CLI/CLI.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common_options.hpp"
#include "mplug_owl2/abstractor/sincos_pos_embed.hpp"
#include "mplug_owl2/io/atomic_file.hpp"
#include "mplug_owl2/io/checkpoint.hpp"
#include "mplug_owl2/io/checkpoint_layout.hpp"
#include "mplug_owl2/io/config.hpp"
#include "mplug_owl2/io/synthetic.hpp"
#include "mplug_owl2/io/tokenizer.hpp"
#include "mplug_owl2/model/image_processor.hpp"

namespace cli {

// The configurations --size names.
inline mplug_owl2::ModelConfig synthetic_config(const std::string& size) {
    mplug_owl2::ModelConfig c;  // the defaults are the release's vision tower and abstractor
    auto& t = c.text;
    auto& v = c.vision;
    auto& a = c.abstractor;
    t.pad_token_id = 0;
    if (size == "release") {  // LLaMA-2-7B
        t.max_position_embeddings = 4096;
        t.rms_norm_eps = 1e-5;
        return c;
    }
    if (size == "tiny") {  // the configuration of reference_outputs/tiny
        t.vocab_size = 320, t.hidden_size = 64, t.intermediate_size = 160, t.num_hidden_layers = 2;
        t.num_attention_heads = t.num_key_value_heads = 4;
        v.hidden_size = 64, v.intermediate_size = 256, v.num_hidden_layers = 2, v.num_attention_heads = 4;
        v.image_size = 56;
        a.num_learnable_queries = 8, a.hidden_size = 64, a.num_hidden_layers = 2, a.num_attention_heads = 4;
        a.intermediate_size = 96, a.encoder_hidden_size = 64, a.grid_size = 4;
        return c;
    }
    if (size == "small") {  // a few MB, vocabulary of the test tokenizer
        t.vocab_size = 320, t.hidden_size = 256, t.intermediate_size = 704, t.num_hidden_layers = 4;
        t.num_attention_heads = t.num_key_value_heads = 4;
        v.hidden_size = 128, v.intermediate_size = 512, v.num_hidden_layers = 2, v.num_attention_heads = 4;
        v.image_size = 112;
        a.num_learnable_queries = 16, a.hidden_size = 128, a.num_hidden_layers = 2, a.num_attention_heads = 4;
        a.intermediate_size = 352, a.encoder_hidden_size = 128, a.grid_size = 8;
        return c;
    }
    mplug_owl2::fail("--size ", size, ": expected release, small or tiny");
}

// config.json in the published format.
inline nlohmann::json config_json(const mplug_owl2::ModelConfig& c, const std::string& torch_dtype) {
    const auto& t = c.text;
    const auto& v = c.vision;
    const auto& a = c.abstractor;
    nlohmann::json j = {
        {"architectures", {"MPLUGOwl2LlamaForCausalLM"}},
        {"model_type", c.model_type},
        {"vocab_size", t.vocab_size},
        {"hidden_size", t.hidden_size},
        {"intermediate_size", t.intermediate_size},
        {"num_hidden_layers", t.num_hidden_layers},
        {"num_attention_heads", t.num_attention_heads},
        {"num_key_value_heads", t.num_key_value_heads},
        {"hidden_act", t.hidden_act},
        {"max_position_embeddings", t.max_position_embeddings},
        {"rms_norm_eps", t.rms_norm_eps},
        {"rope_theta", t.rope_theta},
        {"rope_scaling", nullptr},
        {"attention_bias", t.attention_bias},
        {"pretraining_tp", t.pretraining_tp},
        {"use_cache", t.use_cache},
        {"bos_token_id", t.bos_token_id},
        {"tie_word_embeddings", t.tie_word_embeddings},
        {"torch_dtype", torch_dtype},
    };
    if (t.pad_token_id) j["pad_token_id"] = *t.pad_token_id;
    if (t.eos_token_id.size() == 1) j["eos_token_id"] = t.eos_token_id[0];
    else j["eos_token_id"] = t.eos_token_id;
    if (t.rope_scaling) j["rope_scaling"] = {{"type", t.rope_scaling->type}, {"factor", t.rope_scaling->factor}};
    if (c.image_aspect_ratio) j["image_aspect_ratio"] = *c.image_aspect_ratio;
    j["visual_config"] = {
        {"visual_model",
         {{"hidden_size", v.hidden_size},
          {"intermediate_size", v.intermediate_size},
          {"projection_dim", v.projection_dim},
          {"num_hidden_layers", v.num_hidden_layers},
          {"num_attention_heads", v.num_attention_heads},
          {"num_channels", v.num_channels},
          {"image_size", v.image_size},
          {"patch_size", v.patch_size},
          {"hidden_act", v.hidden_act},
          {"layer_norm_eps", v.layer_norm_eps},
          {"attention_dropout", v.attention_dropout},
          {"use_flash_attn", v.use_flash_attn},
          {"use_post_layernorm", v.use_post_layernorm},
          {"use_cls_token", v.use_cls_token}}},
        {"visual_abstractor",
         {{"add_v2t_pos_emb", a.add_v2t_pos_emb},
          {"use_cls_token", a.use_cls_token},
          {"num_learnable_queries", a.num_learnable_queries},
          {"hidden_size", a.hidden_size},
          {"num_hidden_layers", a.num_hidden_layers},
          {"num_attention_heads", a.num_attention_heads},
          {"intermediate_size", a.intermediate_size},
          {"attention_probs_dropout_prob", a.attention_probs_dropout_prob},
          {"layer_norm_eps", a.layer_norm_eps},
          {"encoder_hidden_size", a.encoder_hidden_size},
          {"grid_size", a.grid_size}}}};
    return j;
}

// preprocessor_config.json: CLIPImageProcessor at the model's image size.
inline nlohmann::json preprocessor_json(const mplug_owl2::ModelConfig& c) {
    const mplug_owl2::ImageProcessorConfig d;  // CLIP's mean and std
    return {{"crop_size", c.vision.image_size},
            {"do_center_crop", true},
            {"do_normalize", true},
            {"do_resize", true},
            {"feature_extractor_type", "CLIPFeatureExtractor"},
            {"image_mean", d.image_mean},
            {"image_std", d.image_std},
            {"resample", 3},
            {"size", c.vision.image_size}};
}

// The synthetic model as a TensorSource that makes each tensor when it is
// asked for, keeping only the last one.
class SyntheticSource : public mplug_owl2::TensorSource {
public:
    SyntheticSource(const mplug_owl2::ModelConfig& c, mplug_owl2::DType dtype, std::uint64_t seed)
        : config_(c), dtype_(dtype), seed_(seed) {
        mplug_owl2::LayoutOptions layout;
        layout.rotary_inv_freq = true;
        layout.abstractor_pos_tables = true;
        for (auto& e : mplug_owl2::checkpoint_layout(c, layout)) entries_.emplace(e.name, std::move(e));
    }

    std::vector<std::string> names() const override {
        std::vector<std::string> out;
        for (const auto& kv : entries_) out.push_back(kv.first);
        return out;
    }
    const mplug_owl2::TensorInfo* find(const std::string& name) const override {
        auto it = entries_.find(name);
        if (it == entries_.end()) return nullptr;
        if (name != cached_) make(it->second);
        return &info_;
    }
    bool has(const std::string& name) const override { return entries_.count(name) != 0; }
    std::string origin(const std::string&) const override { return "synthetic weights"; }

private:
    void make(const mplug_owl2::TensorEntry& e) const {
        using namespace mplug_owl2;
        using synthetic_detail::ends_with;
        std::vector<float> v(shape_numel(e.shape));
        const auto A = static_cast<std::size_t>(config_.abstractor.hidden_size);
        if (ends_with(e.name, ".q_pos_embed")) {
            const Matrix<float> t = get_1d_sincos_pos_embed(A, static_cast<std::size_t>(config_.abstractor.num_learnable_queries));
            std::copy(t.begin(), t.end(), v.begin());
        } else if (ends_with(e.name, ".k_pos_embed")) {
            const Matrix<float> t = get_2d_sincos_pos_embed(A, static_cast<std::size_t>(config_.abstractor.grid_size),
                                                            config_.abstractor.use_cls_token);
            std::copy(t.begin(), t.end(), v.begin());
        } else {
            synthetic_values(e.name, e.shape, seed_, v.data(), config_.text.rope_theta);
        }
        bytes_ = encode_floats(v, dtype_);
        info_ = TensorInfo{dtype_, e.shape, bytes_.data(), bytes_.size()};
        cached_ = e.name;
    }

    mplug_owl2::ModelConfig config_;
    mplug_owl2::DType dtype_;
    std::uint64_t seed_;
    std::map<std::string, mplug_owl2::TensorEntry> entries_;
    mutable std::string cached_;
    mutable std::vector<std::uint8_t> bytes_;
    mutable mplug_owl2::TensorInfo info_;
};

struct SynthOptions {
    std::string out, layout = "bin", dtype = "fp16", size = "release", config, tokenizer;
    bool single_file = false;
    std::uint64_t seed = 0;
};

// The entries of a folder.
inline std::set<std::string> folder_entries(const std::string& dir) {
    std::set<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir)) out.insert(e.path().filename().string());
    return out;
}

// The files of the checkpoint, each through a temporary name, config.json
// last: a folder without it is visibly incomplete.
inline void write_synth_files(const SynthOptions& o, const mplug_owl2::ModelConfig& config, mplug_owl2::DType dtype,
                              const mplug_owl2::Tokenizer* tok) {
    using namespace mplug_owl2;
    namespace fs = std::filesystem;
    // 1. the weights, tensor by tensor
    const SyntheticSource src(config, dtype, o.seed);
    const auto shards = o.single_file ? std::vector<std::vector<std::string>>{src.names()}
                                      : shards_by_decoder_layer(src.names());
    save_checkpoint(src, o.out, o.layout == "safetensors" ? CheckpointFormat::Safetensors : CheckpointFormat::PyTorch,
                    dtype, shards);
    // ... then off the page cache, where writing left them in 4 KB pages: the
    // first run reads them back in 2 MB pages (io/mapped_file.hpp)
    for (const auto& e : fs::directory_iterator(o.out))
        if (e.path().extension() == ".bin" || e.path().extension() == ".safetensors")
            release_cached_pages(e.path().string());

    // 2. the tokenizer files, when given
    if (tok) {
        const fs::path from = fs::path(o.tokenizer);
        const fs::path dir = fs::is_directory(from) ? from : from.parent_path();
        copy_file_atomically((fs::is_directory(from) ? dir / "tokenizer.model" : from).string(),
                             (fs::path(o.out) / "tokenizer.model").string());
        for (const char* f : {"tokenizer_config.json", "special_tokens_map.json"})
            if (fs::exists(dir / f)) copy_file_atomically((dir / f).string(), (fs::path(o.out) / f).string());
    } else {
        std::cerr << "note: no tokenizer.model written (a real one cannot be made): give the prompt as ids "
                     "(answer --prompt-ids, trace --input-ids) or copy the release's tokenizer files\n";
    }

    // 3. the configuration files
    const char* torch_dtype = dtype == DType::F16 ? "float16" : dtype == DType::BF16 ? "bfloat16" : "float32";
    write_file_atomically(o.out + "/preprocessor_config.json", preprocessor_json(config).dump(2) + "\n");
    write_file_atomically(o.out + "/config.json", config_json(config, torch_dtype).dump(2) + "\n");
    std::cout << o.out << ": " << src.names().size() << " tensors in " << shards.size() << " file"
              << (shards.size() == 1 ? "" : "s") << "\n";
}

inline void run_synth_checkpoint(const SynthOptions& o) {
    using namespace mplug_owl2;
    namespace fs = std::filesystem;
    // 1. what to write, checked before anything is written
    const ModelConfig config = o.config.empty() ? synthetic_config(o.size) : load_config(o.config);
    const DType dtype = o.dtype == "bf16" ? DType::BF16 : o.dtype == "fp32" ? DType::F32 : DType::F16;
    std::unique_ptr<Tokenizer> tok;
    if (!o.tokenizer.empty()) {
        tok = std::make_unique<Tokenizer>(o.tokenizer);
        if (tok->vocab_size() > config.text.vocab_size)
            fail("--tokenizer ", o.tokenizer, ": ", tok->vocab_size(), " pieces, more than the model's vocab_size ",
                 config.text.vocab_size);
    }
    std::error_code ec;
    const bool created = !fs::exists(o.out, ec);
    fs::create_directories(o.out, ec);
    if (!fs::is_directory(o.out, ec)) fail("--out ", o.out, ": cannot create the folder");
    if (::access(o.out.c_str(), W_OK) != 0) fail("--out ", o.out, ": the folder is not writable");
    for (const char* f : {"model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                          "pytorch_model.bin.index.json"})
        if (fs::exists(fs::path(o.out) / f))
            fail("--out ", o.out, ": already holds a checkpoint (", f, "); give an empty or new folder");

    // 2. the files; on failure, whatever this run added to the folder goes
    const std::set<std::string> before = folder_entries(o.out);
    try {
        write_synth_files(o, config, dtype, tok.get());
    } catch (...) {
        for (const auto& name : folder_entries(o.out))
            if (!before.count(name)) fs::remove(fs::path(o.out) / name, ec);
        if (created) fs::remove(o.out, ec);  // only if empty
        throw;
    }
}

inline void register_synth_checkpoint(CLI::App& app) {
    auto* sub = app.add_subcommand("synth-checkpoint", "Write a random-weight checkpoint in the published layout");
    auto o = std::make_shared<SynthOptions>();
    sub->add_option("--out", o->out, "folder to write (created; must hold no checkpoint yet)")->required();
    sub->add_option("--layout", o->layout, "bin (torch.save files, as the release) or safetensors")
        ->check(CLI::IsMember({"bin", "safetensors"}));
    sub->add_option("--dtype", o->dtype, "stored dtype: fp16 (as the release), bf16 or fp32")
        ->check(CLI::IsMember({"fp16", "bf16", "fp32"}));
    auto* size = sub->add_option("--size", o->size, "release (7B, ~16 GB in fp16), small or tiny")
                     ->check(CLI::IsMember({"release", "small", "tiny"}));
    sub->add_option("--config", o->config, "a config.json to follow instead of --size")->excludes(size);
    sub->add_flag("--single-file", o->single_file, "one weights file instead of one shard per decoder layer plus one");
    sub->add_option("--seed", o->seed, "seed of the random weights")->check(count_validator());
    sub->add_option("--tokenizer", o->tokenizer,
                    "tokenizer.model (or its folder) to copy, with tokenizer_config.json and special_tokens_map.json "
                    "beside it");
    sub->callback([o] { run_synth_checkpoint(*o); });
}

}  // namespace cli
