// VLMEvalKit's benchmark files: tab-separated, one row per question, a
// header row naming the columns `index`, `image` (the image as base64) or
// `image_path`, `question`, `answer`, `category`, `hint` and `A`..`H` (the
// options of a multiple-choice question). The cells are read as pandas'
// read_csv(sep='\t') reads them, which VLMEvalKit uses:
// - a cell that starts with '"' is quoted: it ends at the next lone '"',
//   holds tabs and line breaks, and "" inside stands for one '"';
// - `hint` and option cells that pandas reads as missing (empty, "NA",
//   "N/A", "nan", "None", "null", ...) count as absent, so such an option is
//   not offered, as in VLMEvalKit;
// - an `image` cell of at most 64 characters is not an image but the
//   `index` of the row that holds it (questions on one image share it);
// - `image_path` and `answer` cells written as Python lists ("['a', 'b']")
//   are lists: several images, or VQA's human answers.
// Bad rows (a wrong number of cells, no index or question, a duplicate
// index, an image reference to a row without an image) are reported with
// their line numbers and the file is refused.
#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <cstddef>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "benchmark.hpp"

namespace mplug_owl2::eval {

// The questions of a TSV file.
struct TsvRecord {
    std::size_t line = 0;  // where the record starts, from 1
    std::vector<std::string> cells;
};

// Splits TSV text into records (quoted cells may span lines); CRLF line ends
// are read as LF. A quote left open at the end of the text is an error.
inline std::vector<TsvRecord> split_tsv(const std::string& text, const std::string& file) {
    std::vector<TsvRecord> records;
    std::size_t i = 0, line = 1;
    while (i < text.size()) {
        TsvRecord r;
        r.line = line;
        std::string cell;
        bool end = false;
        while (!end) {
            if (i < text.size() && text[i] == '"') {  // a quoted cell
                const std::size_t opened = line;
                ++i;
                for (;;) {
                    if (i >= text.size()) fail(file, ": line ", opened, ": a quoted cell is never closed");
                    if (text[i] == '"') {
                        if (i + 1 < text.size() && text[i + 1] == '"') {
                            cell += '"';
                            i += 2;
                            continue;
                        }
                        ++i;
                        break;
                    }
                    if (text[i] == '\n') ++line;
                    cell += text[i++];
                }
            }
            // the rest of the cell, up to a tab or the end of the line
            while (i < text.size() && text[i] != '\t' && text[i] != '\n') cell += text[i++];
            if (!cell.empty() && cell.back() == '\r' && (i >= text.size() || text[i] == '\n')) cell.pop_back();
            r.cells.push_back(std::move(cell));
            cell.clear();
            if (i >= text.size() || text[i] == '\n') end = true;
            if (i < text.size()) {
                if (text[i] == '\n') ++line;
                ++i;
            }
        }
        if (!(r.cells.size() == 1 && r.cells[0].empty())) records.push_back(std::move(r));  // blank lines
    }
    return records;
}

// The strings pandas' read_csv reads as missing (its default na_values).
inline bool pandas_missing(const std::string& cell) {
    static const std::set<std::string> na = {"",     "#N/A", "#N/A N/A", "#NA",  "-1.#IND", "-1.#QNAN", "-NaN",
                                             "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",     "NA",       "NULL",
                                             "NaN",  "None", "n/a",      "nan",  "null"};
    return na.count(cell) != 0;
}

// "['a', \"b\"]" -> {"a", "b"}; nullopt when the text is not a Python list of
// string literals (backslash escapes \\ \' \" \n \t are read).
inline std::optional<std::vector<std::string>> python_string_list(const std::string& s) {
    std::size_t i = 0;
    const auto skip = [&] {
        while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
    };
    skip();
    if (i >= s.size() || s[i] != '[') return std::nullopt;
    ++i;
    std::vector<std::string> out;
    skip();
    if (i < s.size() && s[i] == ']') return i + 1 == s.size() ? std::optional(out) : std::nullopt;
    for (;;) {
        skip();
        if (i >= s.size() || (s[i] != '\'' && s[i] != '"')) return std::nullopt;
        const char q = s[i++];
        std::string item;
        for (;;) {
            if (i >= s.size()) return std::nullopt;
            char c = s[i++];
            if (c == q) break;
            if (c == '\\' && i < s.size()) {
                c = s[i++];
                if (c == 'n') c = '\n';
                else if (c == 't') c = '\t';
            }
            item += c;
        }
        out.push_back(std::move(item));
        skip();
        if (i < s.size() && s[i] == ',') {
            ++i;
            skip();
            if (i < s.size() && s[i] == ']') break;  // a trailing comma
            continue;
        }
        if (i < s.size() && s[i] == ']') break;
        return std::nullopt;
    }
    ++i;
    skip();
    return i == s.size() ? std::optional(out) : std::nullopt;
}

// Standard base64 (RFC 4648, '=' padding, line breaks ignored) to bytes.
inline std::string decode_base64(const std::string& text, const std::string& what) {
    std::array<int, 256> value;
    value.fill(-1);
    const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (std::size_t k = 0; k < alphabet.size(); ++k) value[static_cast<unsigned char>(alphabet[k])] = static_cast<int>(k);
    std::string out;
    out.reserve(text.size() / 4 * 3);
    unsigned bits = 0;
    int count = 0, padding = 0;
    for (const char ch : text) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == '\n' || c == '\r' || c == ' ') continue;
        if (c == '=') {
            ++padding;
            continue;
        }
        if (value[c] < 0 || padding > 0) fail(what, ": not base64 (character '", ch, "')");
        bits = (bits << 6) | static_cast<unsigned>(value[c]);
        if (++count == 4) {
            out += static_cast<char>((bits >> 16) & 0xFF);
            out += static_cast<char>((bits >> 8) & 0xFF);
            out += static_cast<char>(bits & 0xFF);
            bits = 0;
            count = 0;
        }
    }
    if (count == 1 || padding > 2) fail(what, ": not base64 (its length does not fit)");
    if (count == 2) out += static_cast<char>((bits >> 4) & 0xFF);
    if (count == 3) {
        out += static_cast<char>((bits >> 10) & 0xFF);
        out += static_cast<char>((bits >> 2) & 0xFF);
    }
    return out;
}

// An answer cell: a Python list of strings is VQA's human answers, anything
// else one answer; an absent or empty cell is null.
inline nlohmann::json answer_from_cell(const std::optional<std::string>& cell) {
    if (!cell || cell->empty()) return nullptr;
    if (auto list = python_string_list(*cell)) return *list;
    return *cell;
}

// The questions of a VLMEvalKit TSV file, as benchmark `b`.
inline std::vector<Sample> read_tsv(const std::string& path, Benchmark b) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(path, ": cannot open for reading");
    std::stringstream bytes;
    bytes << in.rdbuf();
    const std::vector<TsvRecord> records = split_tsv(bytes.str(), path);
    if (records.empty()) fail(path, ": empty, expected a header row naming the columns");
    std::map<std::string, std::size_t> column;
    for (std::size_t c = 0; c < records[0].cells.size(); ++c) column[records[0].cells[c]] = c;
    for (const char* required : {"index", "question"})
        if (!column.count(required)) fail(path, ": no column \"", required, "\" in the header row");
    const bool has_image = column.count("image") != 0, has_path = column.count("image_path") != 0;
    if (b != Benchmark::TextMcq && !has_image && !has_path)
        fail(path, ": no column \"image\" or \"image_path\" (", benchmark_name(b), " questions are about an image)");

    BadRows bad(path);
    std::vector<Sample> samples;
    std::map<std::string, std::size_t> row_of;  // index -> position in `samples`
    for (std::size_t r = 1; r < records.size(); ++r) {
        const TsvRecord& rec = records[r];
        if (rec.cells.size() != records[0].cells.size()) {
            bad.add(rec.line, std::to_string(rec.cells.size()) + " cells, the header names " +
                                  std::to_string(records[0].cells.size()));
            continue;
        }
        const auto cell = [&](const std::string& name) -> std::optional<std::string> {
            const auto it = column.find(name);
            if (it == column.end()) return std::nullopt;
            return rec.cells[it->second];
        };
        Sample s;
        s.line = rec.line;
        s.benchmark = b;
        s.id = *cell("index");
        s.question = *cell("question");
        if (s.id.empty() || s.question.empty()) {
            bad.add(rec.line, s.id.empty() ? "no index" : "no question");
            continue;
        }
        if (row_of.count(s.id)) {
            bad.add(rec.line, "index " + s.id + " already used on line " + std::to_string(samples[row_of[s.id]].line));
            continue;
        }
        s.category = cell("category").value_or("");
        if (const auto hint = cell("hint"); hint && !pandas_missing(*hint)) s.hint = *hint;
        for (char letter = 'A'; letter <= 'H'; ++letter) {
            const auto option = cell(std::string(1, letter));
            if (option && !pandas_missing(*option)) s.choices.emplace_back(std::string(1, letter), *option);
        }
        s.answer = answer_from_cell(cell("answer"));
        if (has_image && !cell("image")->empty()) {
            s.image_key = *cell("image");
            if (s.image_key.size() > 64) {
                s.image_base64 = std::make_shared<const std::string>(std::move(s.image_key));
                s.image_key = s.id;
            }
        } else if (has_path && !cell("image_path")->empty()) {
            s.image_key = *cell("image_path");
            for (const auto& p : python_string_list(s.image_key).value_or(std::vector<std::string>{s.image_key}))
                s.image_paths.push_back(resolve_against(path, p));
        } else if (b != Benchmark::TextMcq) {
            bad.add(rec.line, "no image");
            continue;
        }
        if (is_multiple_choice(b) && s.choices.size() < 2) {
            bad.add(rec.line, "a multiple-choice question needs 2 or more options in the columns A..H, found " +
                                  std::to_string(s.choices.size()));
            continue;
        }
        s.order = samples.size();
        row_of[s.id] = samples.size();
        samples.push_back(std::move(s));
    }
    // Short image cells name the row holding the image (VLMEvalKit's convention).
    for (Sample& s : samples) {
        if (s.image_base64 || !s.image_paths.empty() || s.image_key.empty()) continue;
        const auto it = row_of.find(s.image_key);
        if (it == row_of.end() || !samples[it->second].image_base64) {
            bad.add(s.line, "the image cell \"" + s.image_key + "\" names no row holding an image");
            continue;
        }
        s.image_base64 = samples[it->second].image_base64;
    }
    bad.throw_if_any();
    return samples;
}

}  // namespace mplug_owl2::eval
