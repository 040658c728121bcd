// `mplug-owl2 merge SHARD.jsonl... --out RUN.jsonl`: the shard files of one
// eval run (--shard I/N) joined into the file one process would have
// written: one header (shard 0 of 1), the lines ordered by question, then by
// ablation in the order of the header's settings.ablations, a repeated
// (id, ablation) pair dropped. Shards whose headers differ in anything but
// the shard index are refused. --out is written whole or not at all.
#pragma once

#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "common_options.hpp"
#include "mplug_owl2/eval/run_file.hpp"
#include "mplug_owl2/io/atomic_file.hpp"

namespace cli {

inline void run_merge(const std::vector<std::string>& shards, const std::string& out) {
    using namespace mplug_owl2;
    check_output_file(out, "--out");
    for (const auto& s : shards)
        if (std::filesystem::exists(out) && std::filesystem::equivalent(s, out))
            fail("--out ", out, ": is one of the shard files");
    eval::MergeReport report;
    const std::string merged = eval::merge_run_files(shards, report);
    write_file_atomically(out, merged);
    std::cerr << "merged " << shards.size() << " files: " << report.lines << " lines, " << report.duplicates
              << " duplicates dropped";
    if (!report.missing_shards.empty()) {
        std::cerr << "; no file of shard";
        for (std::size_t i : report.missing_shards) std::cerr << " " << i;
    }
    std::cerr << "\n";
}

inline void register_merge(CLI::App& app) {
    auto* sub = app.add_subcommand("merge", "Join the shard files of one eval run into one run file");
    auto shards = std::make_shared<std::vector<std::string>>();
    auto out = std::make_shared<std::string>();
    sub->add_option("shards", *shards, "shard files (JSONL)")->required()->check(CLI::ExistingFile);
    sub->add_option("--out", *out, "the merged run file")->required();
    sub->callback([shards, out] { run_merge(*shards, *out); });
}

}  // namespace cli
