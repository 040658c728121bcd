// The JSONL manifest: one JSON object per line,
//   {"id": "q1", "image": "img/1.jpg", "question": "...", "answer": "yes",
//    "category": "existence", "choices": ["cat", "dog"], "hint": "..."}
// - id: a string or an integer (kept as its decimal text);
// - image: a path or an array of paths, relative to the manifest's folder
//   (absent for text-mcq);
// - answer: a string, an array of strings (VQA's human answers), or for
//   multiple choice the option's letter or its position from 0 (as
//   mPLUG-Owl2's mmbench_converter.py writes it); absent on a test split;
// - choices: an array (letters A, B, ... in order) or an object
//   {"A": "...", "B": "..."}; needed for multiple choice;
// - category and hint are optional. Blank lines are skipped.
// Bad lines (not JSON, a missing or mistyped field, a duplicate id) are
// reported with their line numbers and the file is refused.
#pragma once

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "benchmark.hpp"
#include "tsv_reader.hpp"

namespace mplug_owl2::eval {

// Reads one manifest line into `s`; returns what is wrong, empty when nothing.
inline std::string sample_from_manifest_line(const nlohmann::json& j, const std::string& path, Sample& s) {
    if (!j.is_object()) return "expected a JSON object";
    const auto text = [&](const char* key, std::string& out, bool required) -> std::string {
        if (!j.contains(key)) return required ? std::string("no \"") + key + "\"" : "";
        if (!j[key].is_string()) return std::string("\"") + key + "\" is not a string";
        out = j[key].get<std::string>();
        return "";
    };
    if (!j.contains("id")) return "no \"id\"";
    if (j["id"].is_string()) s.id = j["id"].get<std::string>();
    else if (j["id"].is_number_integer()) s.id = std::to_string(j["id"].get<long long>());
    else return "\"id\" is neither a string nor an integer";
    for (const auto& why : {text("question", s.question, true), text("category", s.category, false),
                            text("hint", s.hint, false)})
        if (!why.empty()) return why;
    if (j.contains("image")) {
        const auto& im = j["image"];
        if (im.is_string()) {
            s.image_key = im.get<std::string>();
            s.image_paths = {resolve_against(path, s.image_key)};
        } else if (im.is_array() && !im.empty()) {
            for (const auto& p : im) {
                if (!p.is_string()) return "\"image\" holds a non-string";
                s.image_key += (s.image_key.empty() ? "" : ",") + p.get<std::string>();
                s.image_paths.push_back(resolve_against(path, p.get<std::string>()));
            }
        } else {
            return "\"image\" is neither a path nor an array of paths";
        }
    } else if (s.benchmark != Benchmark::TextMcq) {
        return "no \"image\"";
    }
    if (j.contains("choices")) {
        const auto& c = j["choices"];
        if (c.is_array()) {
            if (c.size() > 26) return "more than 26 choices";
            for (std::size_t k = 0; k < c.size(); ++k) {
                if (!c[k].is_string()) return "\"choices\" holds a non-string";
                s.choices.emplace_back(std::string(1, static_cast<char>('A' + k)), c[k].get<std::string>());
            }
        } else if (c.is_object()) {
            for (const auto& [letter, t] : c.items()) {  // nlohmann's objects iterate in key order: A, B, ...
                if (letter.size() != 1 || letter[0] < 'A' || letter[0] > 'Z' || !t.is_string())
                    return "\"choices\" must map letters A..Z to strings";
                s.choices.emplace_back(letter, t.get<std::string>());
            }
        } else {
            return "\"choices\" is neither an array nor an object";
        }
    }
    if (is_multiple_choice(s.benchmark) && s.choices.size() < 2)
        return "a multiple-choice question needs \"choices\" (2 or more)";
    if (j.contains("answer")) {
        const auto& a = j["answer"];
        if (a.is_number_integer() && !s.choices.empty()) {
            const long long k = a.get<long long>();
            if (k < 0 || k >= static_cast<long long>(s.choices.size())) return "\"answer\" is not a choice's position";
            s.answer = s.choices[static_cast<std::size_t>(k)].first;
        } else if (a.is_string() || (a.is_array() && std::all_of(a.begin(), a.end(), [](const auto& x) {
                                         return x.is_string();
                                     }))) {
            s.answer = a;
        } else if (!a.is_null()) {
            return "\"answer\" is neither a string, an array of strings nor a choice's position";
        }
    }
    return "";
}

inline std::vector<Sample> read_manifest(const std::string& path, Benchmark b) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(path, ": cannot open for reading");
    BadRows bad(path);
    std::vector<Sample> samples;
    std::map<std::string, std::size_t> line_of;
    std::string text;
    for (std::size_t line = 1; std::getline(in, text); ++line) {
        if (!text.empty() && text.back() == '\r') text.pop_back();
        if (text.find_first_not_of(" \t") == std::string::npos) continue;
        Sample s;
        s.line = line;
        s.benchmark = b;
        std::string why;
        try {
            why = sample_from_manifest_line(nlohmann::json::parse(text), path, s);
        } catch (const nlohmann::json::parse_error&) {
            why = "not JSON";
        }
        if (why.empty() && line_of.count(s.id))
            why = "id " + s.id + " already used on line " + std::to_string(line_of[s.id]);
        if (!why.empty()) {
            bad.add(line, why);
            continue;
        }
        line_of[s.id] = line;
        s.order = samples.size();
        samples.push_back(std::move(s));
    }
    bad.throw_if_any();
    return samples;
}

// A data file by its extension: .tsv (VLMEvalKit) or .jsonl (the manifest).
inline std::vector<Sample> read_benchmark(const std::string& path, Benchmark b) {
    const std::string ext = std::filesystem::path(path).extension().string();
    if (ext == ".tsv") return read_tsv(path, b);
    if (ext == ".jsonl") return read_manifest(path, b);
    fail(path, ": unknown data format \"", ext, "\", expected a VLMEvalKit .tsv or a .jsonl manifest");
}

}  // namespace mplug_owl2::eval
