// `mplug-owl2 info --model DIR`: the configuration as parsed (with the
// official defaults filled in) and the tensors of the checkpoint, in any of
// the published layouts.
#pragma once

#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>
#include <string>

#include "mplug_owl2/io/config.hpp"
#include "mplug_owl2/io/checkpoint.hpp"

namespace cli {

inline void run_info(const std::string& dir) {
    using namespace mplug_owl2;
    const ModelConfig c = load_config(dir + "/config.json");
    const auto& t = c.text;
    const auto& v = c.vision;
    const auto& a = c.abstractor;
    std::cout << "decoder: " << t.num_hidden_layers << " layers, width " << t.hidden_size << ", " << t.num_attention_heads
              << " heads (" << t.num_key_value_heads << " key/value), MLP " << t.intermediate_size << ", vocab "
              << t.vocab_size << ", rope_theta " << t.rope_theta << "\n";
    std::cout << "vision:  " << v.num_hidden_layers << " layers, width " << v.hidden_size << ", " << v.num_attention_heads
              << " heads, MLP " << v.intermediate_size << ", " << v.image_size << " px / patch " << v.patch_size << " ("
              << v.seq_len() << " tokens), " << v.hidden_act << "\n";
    std::cout << "abstractor: " << a.num_hidden_layers << " layers, " << a.num_learnable_queries << " queries, width "
              << a.hidden_size << ", " << a.num_attention_heads << " heads, MLP " << a.intermediate_size << "\n";
    const auto weights = open_checkpoint(dir);
    std::size_t bytes = 0;
    const auto names = weights->names();
    for (const auto& n : names) bytes += weights->find(n)->nbytes;
    std::cout << names.size() << " tensors, " << bytes << " bytes, in " << dir << "\n";
}

inline void register_info(CLI::App& app) {
    auto* sub = app.add_subcommand("info", "Show the configuration and tensors of a checkpoint folder");
    auto dir = std::make_shared<std::string>();
    sub->add_option("--model", *dir, "checkpoint folder (config.json + weights)")->required();
    sub->callback([dir] { run_info(*dir); });
}

}  // namespace cli
