// The file an evaluation run writes (RUN.jsonl): one JSON object per line.
// The first line is the header:
//   {"header": {"model": DIR, "config_hash": "...", "version": "0.1.0",
//               "settings": {"benchmark": "mme", "data": FILE, "ablations": ["official", ...], ...},
//               "shard": {"index": I, "count": N}}}
// then one line per (question, ablation), in the order a single process
// writes them: by the question's position in the data file ("sample"),
// then by the ablation's position in settings.ablations:
//   {"id": "12", "sample": 11, "benchmark": "mme", "category": "existence",
//    "image": "11", "ablation": "official", "prompt": "USER: ...",
//    "answer": "yes", "choices": null, "prediction": "Yes",
//    "generated_ids": [3869, 2], "seconds": 0.84}
// `answer` is a string or VQA's array of human answers; `choices` maps the
// option letters to their texts for multiple choice ({"A": "...", ...}) and
// is null otherwise. Lines are appended and flushed one at a time, so a run
// that is killed leaves every finished line whole and at most a partial
// last line (without its line break), which a rerun drops and rewrites.
#pragma once

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "benchmark.hpp"

namespace mplug_owl2::eval {

using Json = nlohmann::ordered_json;

struct ResultLine {
    std::string id;
    std::optional<std::size_t> sample;  // the question's position in the data file
    std::string benchmark, category, image, ablation = "official", prompt;
    Json answer;   // string, or array of strings (VQA)
    Json choices;  // {"A": text, ...} for multiple choice, else null
    std::string prediction;
    std::vector<std::int64_t> generated_ids;
    double seconds = 0;
};

inline Json to_json(const ResultLine& r) {
    Json j;
    j["id"] = r.id;
    j["sample"] = r.sample ? Json(*r.sample) : Json(nullptr);
    j["benchmark"] = r.benchmark;
    j["category"] = r.category;
    j["image"] = r.image;
    j["ablation"] = r.ablation;
    j["prompt"] = r.prompt;
    j["answer"] = r.answer;
    j["choices"] = r.choices;
    j["prediction"] = r.prediction;
    j["generated_ids"] = r.generated_ids;
    j["seconds"] = r.seconds;
    return j;
}

// The line of question `s` under `ablation` before generation: everything
// but prediction, generated_ids and seconds. The prediction is to be the
// decoded new tokens without special tokens, stripped, as the official
// scripts take it (tokenizer.decode(..., skip_special_tokens=True).strip()).
inline ResultLine result_line(const Sample& s, const std::string& ablation, const std::string& prompt) {
    ResultLine r;
    r.id = s.id;
    r.sample = s.order;
    r.benchmark = benchmark_name(s.benchmark);
    r.category = s.category;
    r.image = s.image_key;
    r.ablation = ablation;
    r.prompt = prompt;
    r.answer = s.answer;
    if (!s.choices.empty()) {
        r.choices = Json::object();
        for (const auto& [letter, text] : s.choices) r.choices[letter] = text;
    }
    return r;
}

// --shard I/N: question `order` belongs to shard I when order mod N = I.
inline bool in_shard(std::size_t order, std::size_t index, std::size_t count) {
    if (count == 0 || index >= count) fail("--shard ", index, "/", count, ": expected I/N with 0 <= I < N");
    return order % count == index;
}

// A result line written by this program or another tool: id, benchmark,
// answer and prediction are needed; ablation defaults to "official", the
// other fields to empty. `where` ("FILE:LINE") names the line in errors.
inline ResultLine result_from_json(const Json& j, const std::string& where) {
    const auto text = [&](const char* key, bool required) -> std::string {
        if (!j.contains(key) || j[key].is_null()) {
            if (required) fail(where, ": no \"", key, "\"");
            return "";
        }
        if (j[key].is_string()) return j[key].get<std::string>();
        if (j[key].is_number_integer() && std::string(key) == "id") return std::to_string(j[key].get<long long>());
        fail(where, ": \"", key, "\" is not a string");
    };
    ResultLine r;
    r.id = text("id", true);
    r.benchmark = text("benchmark", true);
    r.prediction = text("prediction", true);
    r.category = text("category", false);
    r.image = text("image", false);
    r.prompt = text("prompt", false);
    if (j.contains("ablation") && !j["ablation"].is_null()) r.ablation = text("ablation", true);
    if (!j.contains("answer")) fail(where, ": no \"answer\"");
    r.answer = j["answer"];
    if (j.contains("choices")) r.choices = j["choices"];
    if (j.contains("sample") && !j["sample"].is_null()) {
        if (!j["sample"].is_number_unsigned()) fail(where, ": \"sample\" is not a position (0 or more)");
        r.sample = j["sample"].get<std::size_t>();
    }
    if (j.contains("generated_ids") && j["generated_ids"].is_array())
        for (const auto& id : j["generated_ids"]) r.generated_ids.push_back(id.get<std::int64_t>());
    if (j.contains("seconds") && j["seconds"].is_number()) r.seconds = j["seconds"].get<double>();
    return r;
}

// A header line: {"header": ...}, or a line of model settings without a
// prediction (as other tools write them).
inline bool is_header_line(const Json& j) {
    return j.is_object() &&
           (j.contains("header") || (!j.contains("prediction") && (j.contains("model") || j.contains("settings"))));
}

inline Json make_header(const std::string& model, const std::string& config_hash, const std::string& version,
                        const Json& settings, std::size_t shard_index = 0, std::size_t shard_count = 1) {
    Json h;
    h["model"] = model;
    h["config_hash"] = config_hash;
    h["version"] = version;
    h["settings"] = settings;
    h["shard"] = {{"index", shard_index}, {"count", shard_count}};
    return Json{{"header", h}};
}

// A run file as it stands on disk.
struct RunFile {
    std::optional<Json> header;  // the first header line, if any
    std::vector<std::pair<std::size_t, Json>> lines;  // (line number, object) of the result lines
    std::uintmax_t complete_bytes = 0;  // the bytes up to the end of the last whole line
    bool partial_last_line = false;     // a last line without its line break (a killed run)
};

// Reads every whole line; a last line without its line break is not read
// (it is what a killed writer leaves). Any other line that is not a JSON
// object is an error naming the file and line.
inline RunFile read_run_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(path, ": cannot open for reading");
    std::stringstream bytes;
    bytes << in.rdbuf();
    const std::string text = bytes.str();
    RunFile f;
    std::size_t start = 0;
    for (std::size_t number = 1; start < text.size(); ++number) {
        const std::size_t end = text.find('\n', start);
        if (end == std::string::npos) {
            f.partial_last_line = true;
            break;
        }
        const std::string line = text.substr(start, end - start);
        start = end + 1;
        f.complete_bytes = start;
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        Json j;
        try {
            j = Json::parse(line);
        } catch (const nlohmann::json::parse_error&) {
            fail(path, ":", number, ": not a JSON line");
        }
        if (!j.is_object()) fail(path, ":", number, ": expected a JSON object");
        if (is_header_line(j)) {
            if (!f.header) f.header = j;
            continue;
        }
        f.lines.emplace_back(number, std::move(j));
    }
    return f;
}

// Appends result lines to a run file, one flushed line at a time. Opening
// an existing file resumes it: its header must equal `header`, a partial
// last line is cut off (a file holding only part of a header starts
// afresh), and finished() holds the (id, ablation) pairs
// already written, for the run to skip.
class RunWriter {
public:
    RunWriter(const std::string& path, const Json& header) : path_(path) {
        std::error_code ec;
        bool resume = false;
        if (std::filesystem::exists(path, ec) && std::filesystem::file_size(path, ec) > 0) {
            const RunFile f = read_run_file(path);
            resume = f.header || !f.lines.empty();
            if (!resume) std::filesystem::resize_file(path, 0);  // killed while writing the header
            if (resume && !f.header) fail(path, ": exists without a header line; remove it or choose another --out");
            if (resume && *f.header != header)
                fail(path, ": was written with other settings (its header ", f.header->dump(), " differs from ",
                     header.dump(), "); remove it or choose another --out");
            for (const auto& [number, j] : f.lines) {
                const ResultLine r = result_from_json(j, path + ":" + std::to_string(number));
                finished_.insert({r.id, r.ablation});
            }
            if (f.partial_last_line) std::filesystem::resize_file(path, f.complete_bytes);
        }
        out_.open(path, std::ios::binary | std::ios::app);
        if (!out_) fail(path, ": cannot open for appending");
        if (!resume) write_line(header);
    }

    const std::set<std::pair<std::string, std::string>>& finished() const { return finished_; }
    bool is_finished(const std::string& id, const std::string& ablation) const {
        return finished_.count({id, ablation}) != 0;
    }

    void write(const ResultLine& r) {
        write_line(to_json(r));
        finished_.insert({r.id, r.ablation});
    }

private:
    void write_line(const Json& j) {
        out_ << j.dump() << '\n' << std::flush;
        if (!out_) fail(path_, ": write failed");
    }
    std::string path_;
    std::ofstream out_;
    std::set<std::pair<std::string, std::string>> finished_;
};

// ---- merge ------------------------------------------------------------------------------

struct MergeReport {
    std::size_t lines = 0, duplicates = 0;
    std::vector<std::size_t> missing_shards;  // shard indices of the header's count with no file
};

// The shards of one run joined as one process would have written them: the
// header with shard 0 of 1, then the lines ordered by "sample", then by the
// ablation's position in settings.ablations (else by first appearance);
// a repeated (id, ablation) pair is dropped (the first file given wins).
// Headers that differ in anything but the shard index are refused.
inline std::string merge_run_files(const std::vector<std::string>& paths, MergeReport& report) {
    if (paths.empty()) fail("merge: no shard files given");
    std::optional<Json> common;  // the header without shard.index
    std::string common_from;
    std::set<std::size_t> shards;
    std::vector<std::pair<std::string, Json>> lines;  // ("FILE:LINE", object)
    for (const auto& path : paths) {
        RunFile f = read_run_file(path);
        if (!f.header) fail(path, ": no header line (expected a run file written by eval)");
        Json h = *f.header;
        std::size_t index = 0;
        if (h["header"].contains("shard")) {
            index = h["header"]["shard"].value("index", std::size_t{0});
            h["header"]["shard"].erase("index");
        }
        if (!common) {
            common = h;
            common_from = path;
        } else if (h != *common) {
            fail(path, ": its header differs from that of ", common_from, " (", h.dump(), " vs ", common->dump(),
                 "): the files are not shards of one run");
        }
        shards.insert(index);
        for (auto& [number, j] : f.lines) lines.emplace_back(path + ":" + std::to_string(number), std::move(j));
    }
    Json header = *common;
    const std::size_t count = header["header"].contains("shard") ? header["header"]["shard"].value("count", std::size_t{1}) : 1;
    for (std::size_t i = 0; i < count; ++i)
        if (!shards.count(i)) report.missing_shards.push_back(i);
    if (header["header"].contains("shard")) header["header"]["shard"] = {{"index", 0}, {"count", 1}};

    std::vector<std::string> ablations;
    const Json settings = header["header"].value("settings", Json::object());
    if (settings.contains("ablations") && settings["ablations"].is_array())
        for (const auto& a : settings["ablations"]) ablations.push_back(a.get<std::string>());
    const bool listed = !ablations.empty();
    std::map<std::string, std::size_t> rank;
    for (std::size_t k = 0; k < ablations.size(); ++k) rank[ablations[k]] = k;

    struct Entry {
        std::size_t sample, ablation;
        Json line;
    };
    std::vector<Entry> entries;
    std::set<std::pair<std::string, std::string>> seen;  // (id, ablation)
    for (auto& [where, j] : lines) {
        const ResultLine r = result_from_json(j, where);
        if (!r.sample) fail(where, ": no \"sample\" (the question's position, which orders the merged file)");
        if (!rank.count(r.ablation)) {
            if (listed) fail(where, ": ablation \"", r.ablation, "\" is not in the header's settings.ablations");
            rank[r.ablation] = rank.size();
        }
        if (!seen.insert({r.id, r.ablation}).second) {
            ++report.duplicates;
            continue;
        }
        entries.push_back({*r.sample, rank[r.ablation], std::move(j)});
    }
    std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
        return a.sample != b.sample ? a.sample < b.sample : a.ablation < b.ablation;
    });
    std::string out = header.dump() + "\n";
    for (const auto& e : entries) out += e.line.dump() + "\n";
    report.lines = entries.size();
    return out;
}

}  // namespace mplug_owl2::eval
