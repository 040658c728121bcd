// Every tensor of the published checkpoint layout for a configuration: its
// official name and shape, in the order the release stores them. Used to
// write synthetic checkpoints in the release layout and to build random
// models in memory; a test checks it against the tiny reference checkpoint.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "../core/tensor.hpp"
#include "config.hpp"

namespace mplug_owl2 {

struct TensorEntry {
    std::string name;
    Shape shape;
    int shard = 0;  // the release's sharding: 0 = embeddings, vision, abstractor, norm, lm_head; 1 + i = decoder layer i
};

struct LayoutOptions {
    // The release also stores each decoder layer's rotary_emb.inv_freq
    // buffer, which the model does not read.
    bool rotary_inv_freq = false;
    // The abstractor's fixed sin-cos tables are buffers: stored in the
    // release, computable when absent.
    bool abstractor_pos_tables = true;
};

inline std::vector<TensorEntry> checkpoint_layout(const ModelConfig& c, const LayoutOptions& opt = {}) {
    std::vector<TensorEntry> out;
    auto add = [&](std::string name, Shape shape, int shard = 0) {
        out.push_back(TensorEntry{std::move(name), std::move(shape), shard});
    };
    using S = std::size_t;
    // Language model.
    const auto& t = c.text;
    const S H = S(t.hidden_size), I = S(t.intermediate_size), V = S(t.vocab_size);
    const S hd = S(t.head_dim()), q_out = S(t.num_attention_heads) * hd, kv_out = S(t.num_key_value_heads) * hd;
    add("model.embed_tokens.weight", {V, H});
    for (int i = 0; i < t.num_hidden_layers; ++i) {
        const std::string p = "model.layers." + std::to_string(i) + ".";
        const int s = 1 + i;
        auto linear = [&](const std::string& name, S outf, S inf, bool bias) {
            add(p + name + ".weight", {outf, inf}, s);
            if (bias) add(p + name + ".bias", {outf}, s);
        };
        linear("self_attn.q_proj", q_out, H, t.attention_bias);
        for (int m = 0; m < 2; ++m) {
            linear("self_attn.k_proj.multiway." + std::to_string(m), kv_out, H, t.attention_bias);
            linear("self_attn.v_proj.multiway." + std::to_string(m), kv_out, H, t.attention_bias);
        }
        linear("self_attn.o_proj", H, q_out, t.attention_bias);
        if (opt.rotary_inv_freq) add(p + "self_attn.rotary_emb.inv_freq", {hd / 2}, s);
        linear("mlp.gate_proj", I, H, false);
        linear("mlp.up_proj", I, H, false);
        linear("mlp.down_proj", H, I, false);
        for (int m = 0; m < 2; ++m) {
            add(p + "input_layernorm.multiway." + std::to_string(m) + ".weight", {H}, s);
            add(p + "post_attention_layernorm.multiway." + std::to_string(m) + ".weight", {H}, s);
        }
    }
    add("model.norm.weight", {H});
    if (!t.tie_word_embeddings) add("lm_head.weight", {V, H});

    // Vision encoder.
    const auto& v = c.vision;
    const S D = S(v.hidden_size), VI = S(v.intermediate_size), P = S(v.patch_size);
    const std::string vp = "model.vision_model.";
    auto layer_norm = [&](const std::string& name, S dim) {
        add(name + ".weight", {dim});
        add(name + ".bias", {dim});
    };
    auto linear0 = [&](const std::string& name, S outf, S inf) {
        add(name + ".weight", {outf, inf});
        add(name + ".bias", {outf});
    };
    if (v.use_cls_token) {
        add(vp + "embeddings.cls_token", {1, 1, D});
        add(vp + "embeddings.position_embedding", {1, S(v.num_patches()) + 1, D});
    } else {
        add(vp + "embeddings.position_embedding", {256, D});
    }
    add(vp + "embeddings.patch_embed.weight", {D, 3, P, P});
    layer_norm(vp + "embeddings.pre_layernorm", D);
    for (int i = 0; i < v.num_hidden_layers; ++i) {
        const std::string p = vp + "encoder.layers." + std::to_string(i) + ".";
        linear0(p + "self_attn.query_key_value", 3 * D, D);
        linear0(p + "self_attn.dense", D, D);
        layer_norm(p + "input_layernorm", D);
        linear0(p + "mlp.fc1", VI, D);
        linear0(p + "mlp.fc2", D, VI);
        layer_norm(p + "post_attention_layernorm", D);
    }
    if (v.use_post_layernorm) layer_norm(vp + "post_layernorm", D);

    // Visual abstractor.
    const auto& a = c.abstractor;
    const S A = S(a.hidden_size), E = S(a.encoder_hidden_size), AI = S(a.intermediate_size), Q = S(a.num_learnable_queries);
    const S grid_rows = S(a.grid_size) * S(a.grid_size) + (a.use_cls_token ? 1 : 0);
    const std::string ap = "model.visual_abstractor.";
    add(ap + "query_embeds", {1, Q, A});
    for (int i = 0; i < a.num_hidden_layers; ++i) {
        const std::string p = ap + "encoder.layers." + std::to_string(i) + ".crossattention.";
        linear0(p + "attention.query", A, A);
        linear0(p + "attention.key", A, E);
        linear0(p + "attention.value", A, E);
        if (opt.abstractor_pos_tables) {
            add(p + "attention.q_pos_embed", {Q, A});
            add(p + "attention.k_pos_embed", {grid_rows, A});
        }
        linear0(p + "output.out_proj", A, A);
        layer_norm(p + "output.norm2", A);
        linear0(p + "output.mlp.w1", AI, A);
        linear0(p + "output.mlp.w2", A, AI);
        linear0(p + "output.mlp.w3", AI, A);
        layer_norm(p + "output.mlp.ffn_ln", AI);
        layer_norm(p + "norm1", E);
        layer_norm(p + "normk", E);
    }
    linear0(ap + "visual_fc", H, A);
    add(ap + "vit_eos", {1, 1, H});
    return out;
}

}  // namespace mplug_owl2
