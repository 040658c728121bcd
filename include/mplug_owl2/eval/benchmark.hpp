// The benchmarks `eval` and `score` know, and one question of a benchmark
// as the input readers (tsv_reader.hpp, manifest_reader.hpp) give it.
#pragma once

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"

namespace mplug_owl2::eval {

// mme, pope: yes/no questions; vqa: open answers scored against several
// human answers; mmbench, scienceqa, mcq: multiple choice about an image;
// text_mcq: multiple choice without an image (MMLU and the like).
enum class Benchmark { Mme, Pope, Vqa, Mmbench, Scienceqa, Mcq, TextMcq };

inline const std::vector<std::pair<Benchmark, std::string>>& benchmark_names() {
    static const std::vector<std::pair<Benchmark, std::string>> names = {
        {Benchmark::Mme, "mme"},         {Benchmark::Pope, "pope"}, {Benchmark::Vqa, "vqa"},
        {Benchmark::Mmbench, "mmbench"}, {Benchmark::Scienceqa, "scienceqa"}, {Benchmark::Mcq, "mcq"},
        {Benchmark::TextMcq, "text-mcq"}};
    return names;
}

inline std::string benchmark_name(Benchmark b) {
    for (const auto& [k, name] : benchmark_names())
        if (k == b) return name;
    fail("benchmark: unknown kind ", static_cast<int>(b));
}

inline std::string benchmark_list() {
    std::string s;
    for (const auto& [k, name] : benchmark_names()) s += (s.empty() ? "" : ", ") + name;
    return s;
}

// `what` names the option or field the name comes from.
inline Benchmark benchmark_from_name(const std::string& name, const std::string& what) {
    for (const auto& [k, n] : benchmark_names())
        if (n == name) return k;
    fail(what, ": unknown benchmark \"", name, "\", expected one of ", benchmark_list());
}

inline bool is_multiple_choice(Benchmark b) {
    return b == Benchmark::Mmbench || b == Benchmark::Scienceqa || b == Benchmark::Mcq || b == Benchmark::TextMcq;
}

// The benchmark a data file holds, from words in its file name (lower-cased):
// "mmbench" or "ccbench" -> mmbench, "mme" -> mme, "pope" -> pope,
// "scienceqa" -> scienceqa, "mmlu" -> text-mcq, "vqa" -> vqa (VQAv2,
// TextVQA, OK-VQA, ...); anything else needs --benchmark.
inline Benchmark benchmark_from_file_name(const std::string& path) {
    std::string name = std::filesystem::path(path).filename().string();
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    const std::vector<std::pair<std::string, Benchmark>> words = {
        {"mmbench", Benchmark::Mmbench}, {"ccbench", Benchmark::Mmbench},     {"mme", Benchmark::Mme},
        {"pope", Benchmark::Pope},       {"scienceqa", Benchmark::Scienceqa}, {"mmlu", Benchmark::TextMcq},
        {"vqa", Benchmark::Vqa}};
    for (const auto& [word, b] : words)
        if (name.find(word) != std::string::npos) return b;
    fail(path, ": the file name does not say which benchmark it holds; give --benchmark (", benchmark_list(), ")");
}

// One question. `answer` is the ground truth as the file gives it: a string
// (yes/no, an option letter, a short answer) or, for VQA, the array of the
// human answers; null when the file has none (a test split).
struct Sample {
    std::string id;            // the TSV's `index` or the manifest's `id`
    std::size_t order = 0;     // position among the file's questions, from 0
    std::size_t line = 0;      // line of the file where the question starts, from 1
    Benchmark benchmark = Benchmark::Vqa;
    std::string category;
    std::string question;
    std::string hint;          // empty: none
    std::vector<std::pair<std::string, std::string>> choices;  // (letter, text), in letter order
    nlohmann::json answer;
    std::string image_key;     // the image as the file names it: its path(s), or the index of the row holding it
    std::vector<std::string> image_paths;  // image files (resolved against the data file's folder)
    std::shared_ptr<const std::string> image_base64;  // or the image itself, base64 as the TSV holds it
    std::size_t images() const { return image_paths.empty() ? (image_base64 ? 1 : 0) : image_paths.size(); }
};

// Rows that cannot be read are collected and the whole file is refused with
// their line numbers: a benchmark with silently missing questions would give
// scores that are not comparable to the official ones.
class BadRows {
public:
    explicit BadRows(std::string file) : file_(std::move(file)) {}
    void add(std::size_t line, const std::string& why) {
        if (shown_ < kShown) message_ += "; line " + std::to_string(line) + ": " + why;
        ++shown_;
    }
    void throw_if_any() const {
        if (shown_ == 0) return;
        fail(file_, ": ", shown_, " bad row", shown_ == 1 ? "" : "s", " (the file is refused)", message_,
             shown_ > kShown ? "; ..." : "");
    }

private:
    static constexpr std::size_t kShown = 10;
    std::string file_, message_;
    std::size_t shown_ = 0;
};

// A path as written in a data file, resolved against the file's folder.
inline std::string resolve_against(const std::string& data_file, const std::string& path) {
    const std::filesystem::path p(path);
    if (p.is_absolute()) return path;
    return (std::filesystem::path(data_file).parent_path() / p).string();
}

}  // namespace mplug_owl2::eval
