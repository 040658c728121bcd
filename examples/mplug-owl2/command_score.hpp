// `mplug-owl2 score RUN.jsonl... [--json]`: the official metrics of the
// result lines of one or more run files (eval's, or any JSONL whose lines
// carry id, benchmark, category, ablation, answer, prediction, ...), per
// benchmark, ablation and category (see mplug_owl2/eval/metrics.hpp and
// docs/evaluation.md). Prints one row per metric; with --json the last line
// is {"<benchmark>": {"<ablation>": {"<metric>": value, ...}}}.
#pragma once

#include <CLI/CLI.hpp>

#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "mplug_owl2/eval/metrics.hpp"

namespace cli {

inline void print_score_table(const mplug_owl2::eval::Json& scores, std::ostream& out) {
    std::size_t wb = 9, wa = 8, wm = 6;
    for (const auto& [b, by_ablation] : scores.items())
        for (const auto& [a, metrics] : by_ablation.items()) {
            wb = std::max(wb, b.size());
            wa = std::max(wa, a.size());
            for (const auto& [m, v] : metrics.items()) wm = std::max(wm, m.size());
        }
    out << std::left << std::setw(static_cast<int>(wb)) << "benchmark" << "  " << std::setw(static_cast<int>(wa))
        << "ablation" << "  " << std::setw(static_cast<int>(wm)) << "metric" << "  value\n";
    for (const auto& [b, by_ablation] : scores.items())
        for (const auto& [a, metrics] : by_ablation.items())
            for (const auto& [m, v] : metrics.items()) {
                std::ostringstream value;
                if (v.is_number_integer() || v.is_number_unsigned()) value << v.dump();
                else value << std::fixed << std::setprecision(4) << v.get<double>();
                out << std::setw(static_cast<int>(wb)) << b << "  " << std::setw(static_cast<int>(wa)) << a << "  "
                    << std::setw(static_cast<int>(wm)) << m << "  " << value.str() << "\n";
            }
}

inline void run_score(const std::vector<std::string>& files, bool json) {
    using namespace mplug_owl2;
    const auto lines = eval::read_results(files);
    if (lines.empty()) fail("score: no result lines in ", files.front(), files.size() > 1 ? " and the others" : "");
    const eval::Json scores = eval::score(lines);
    print_score_table(scores, std::cout);
    if (json) std::cout << scores.dump() << "\n";
}

inline void register_score(CLI::App& app) {
    auto* sub = app.add_subcommand("score", "The official metrics of the result lines of run files");
    auto files = std::make_shared<std::vector<std::string>>();
    auto json = std::make_shared<bool>(false);
    sub->add_option("runs", *files, "run files (JSONL)")->required()->check(CLI::ExistingFile);
    sub->add_flag("--json", *json, "print the scores as one JSON line after the table");
    sub->callback([files, json] { run_score(*files, *json); });
}

}  // namespace cli
