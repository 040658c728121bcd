// The official metrics of each benchmark, computed from result lines
// (run_file.hpp) per benchmark, ablation and category. Scales are those of
// the official tools: MME in points (acc and acc+ ×100 per subtask), VQA in
// percent, the others as fractions in [0, 1].
// - MME (evaluate_mme.py's calculate_metrics): per subtask (category) acc =
//   100·correct/questions, acc_plus = 100·(images whose questions are all
//   correct)/images, score = acc + acc_plus; perception = the sum of the
//   scores of existence, count, position, color, posters, celebrity, scene,
//   landmark, artwork, OCR; cognition = that of commonsense_reasoning,
//   numerical_calculation, text_translation, code_reasoning; total = both.
// - POPE (eval_pope.py), over all questions and per category: with "yes" the
//   positive class, accuracy = (TP+TN)/n, precision = TP/(TP+FP), recall =
//   TP/(TP+FN), f1 = 2PR/(P+R), yes_ratio = (TP+FP)/n; a ratio whose
//   denominator is 0 is reported as 0 (sklearn's zero_division).
// - VQA: accuracy = 100·mean of vqa_accuracy() over the questions (an answer
//   string written as a Python list is read as the list of human answers).
// - mmbench, scienceqa, mcq, text-mcq: a prediction is correct when
//   option_letter() gives the answer's letter; accuracy = correct/n,
//   unparsed = the predictions from which no letter is inferred.
//   mmbench also: circular_accuracy = the fraction of questions all of whose
//   circular copies are correct (CircularEval: rows whose integer ids agree
//   modulo 1,000,000 are one question with its options rotated).
#pragma once

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "answer_parsing.hpp"
#include "benchmark.hpp"
#include "run_file.hpp"
#include "tsv_reader.hpp"

namespace mplug_owl2::eval {

// A result line and where it was read ("FILE:LINE"), for errors.
struct Scored {
    std::string where;
    ResultLine line;
};

// Lines of one group, split by category in order of first appearance.
inline std::vector<std::pair<std::string, std::vector<const Scored*>>> by_category(const std::vector<const Scored*>& lines) {
    std::vector<std::pair<std::string, std::vector<const Scored*>>> out;
    std::map<std::string, std::size_t> at;
    for (const Scored* s : lines) {
        const auto [it, added] = at.emplace(s->line.category, out.size());
        if (added) out.push_back({s->line.category, {}});
        out[it->second].second.push_back(s);
    }
    return out;
}

inline std::string answer_text(const Scored& s) {
    if (!s.line.answer.is_string()) fail(s.where, ": \"answer\" is not a string (", s.line.answer.dump(), ")");
    return s.line.answer.get<std::string>();
}

inline double ratio(double a, double b) { return b == 0 ? 0.0 : a / b; }

inline Json mme_metrics(const std::vector<const Scored*>& lines) {
    static const std::set<std::string> perception = {"existence", "count",     "position", "color",   "posters",
                                                     "celebrity", "scene",     "landmark", "artwork", "OCR"};
    static const std::set<std::string> cognition = {"commonsense_reasoning", "numerical_calculation",
                                                    "text_translation", "code_reasoning"};
    Json per_task = Json::object();
    double perception_score = 0, cognition_score = 0;
    for (const auto& [category, rows] : by_category(lines)) {
        std::size_t correct = 0;
        std::map<std::string, bool> image_correct;  // image -> all its questions correct
        for (const Scored* s : rows) {
            const std::string gt = ascii_lower(answer_text(*s));
            if (gt != "yes" && gt != "no") fail(s->where, ": an MME answer is yes or no, found \"", gt, "\"");
            if (s->line.image.empty()) fail(s->where, ": no \"image\" (MME's acc+ pairs the questions of an image)");
            const bool hit = mme_label(s->line.prediction) == gt;
            correct += hit;
            const auto [it, added] = image_correct.emplace(s->line.image, hit);
            if (!added) it->second = it->second && hit;
        }
        std::size_t images_correct = 0;
        for (const auto& [image, ok] : image_correct) images_correct += ok;
        const double acc = 100.0 * ratio(correct, rows.size());
        const double acc_plus = 100.0 * ratio(images_correct, image_correct.size());
        per_task[category + "/acc"] = acc;
        per_task[category + "/acc_plus"] = acc_plus;
        per_task[category + "/score"] = acc + acc_plus;
        if (perception.count(category)) perception_score += acc + acc_plus;
        if (cognition.count(category)) cognition_score += acc + acc_plus;
    }
    Json m;
    m["perception"] = perception_score;
    m["cognition"] = cognition_score;
    m["total"] = perception_score + cognition_score;
    m["n"] = lines.size();
    m.update(per_task);
    return m;
}

inline void pope_counts(const std::vector<const Scored*>& rows, const std::string& prefix, Json& m) {
    double tp = 0, fp = 0, tn = 0, fn = 0;
    for (const Scored* s : rows) {
        const bool label_yes = ascii_lower(answer_text(*s)) != "no";
        const bool pred_yes = pope_says_yes(s->line.prediction);
        (pred_yes ? (label_yes ? tp : fp) : (label_yes ? fn : tn)) += 1;
    }
    const double precision = ratio(tp, tp + fp), recall = ratio(tp, tp + fn);
    m[prefix + "accuracy"] = ratio(tp + tn, rows.size());
    m[prefix + "precision"] = precision;
    m[prefix + "recall"] = recall;
    m[prefix + "f1"] = ratio(2 * precision * recall, precision + recall);
    m[prefix + "yes_ratio"] = ratio(tp + fp, rows.size());
    m[prefix + "n"] = rows.size();
}

inline Json pope_metrics(const std::vector<const Scored*>& lines) {
    Json m;
    pope_counts(lines, "", m);
    for (const auto& [category, rows] : by_category(lines)) pope_counts(rows, category + "/", m);
    return m;
}

inline double vqa_line_accuracy(const Scored& s) {
    const Json& a = s.line.answer;
    if (a.is_string()) {  // one answer, or the humans' as a Python list (a TSV cell copied as is)
        const auto list = python_string_list(a.get<std::string>());
        return vqa_accuracy(s.line.prediction, list ? *list : std::vector<std::string>{a.get<std::string>()});
    }
    if (!a.is_array() || a.empty()) fail(s.where, ": a VQA answer is a string or a non-empty array of strings");
    std::vector<std::string> humans;
    for (const auto& h : a) {
        if (!h.is_string()) fail(s.where, ": a VQA answer array holds a non-string");
        humans.push_back(h.get<std::string>());
    }
    return vqa_accuracy(s.line.prediction, humans);
}

inline Json vqa_metrics(const std::vector<const Scored*>& lines) {
    const auto mean = [](const std::vector<const Scored*>& rows) {
        double sum = 0;
        for (const Scored* s : rows) sum += vqa_line_accuracy(*s);
        return 100.0 * ratio(sum, rows.size());
    };
    Json m;
    m["accuracy"] = mean(lines);
    m["n"] = lines.size();
    for (const auto& [category, rows] : by_category(lines)) m[category + "/accuracy"] = mean(rows);
    return m;
}

inline std::string mcq_letter(const Scored& s) {
    const Json& c = s.line.choices;
    if (!c.is_object() || c.empty())
        fail(s.where, ": no \"choices\" ({\"A\": text, ...}), which reading the letter of a prediction needs");
    std::vector<std::pair<std::string, std::string>> choices;
    for (const auto& [letter, text] : c.items()) {
        if (!text.is_string()) fail(s.where, ": choice ", letter, " is not a string");
        choices.emplace_back(letter, text.get<std::string>());
    }
    return option_letter(s.line.prediction, choices);
}

// CircularEval's question: the integer id modulo 1,000,000; other ids stand alone.
inline std::string circular_group(const std::string& id) {
    char* end = nullptr;
    const long long v = std::strtoll(id.c_str(), &end, 10);
    if (id.empty() || *end != '\0' || v < 0) return id;
    return std::to_string(v % 1000000);
}

inline void mcq_counts(const std::vector<const Scored*>& rows, const std::string& prefix, bool circular, Json& m) {
    std::size_t correct = 0, unparsed = 0;
    std::map<std::string, bool> group_correct;
    for (const Scored* s : rows) {
        const std::string letter = mcq_letter(*s);
        const bool hit = !letter.empty() && letter == answer_text(*s);
        correct += hit;
        unparsed += letter.empty();
        const auto [it, added] = group_correct.emplace(circular_group(s->line.id), hit);
        if (!added) it->second = it->second && hit;
    }
    m[prefix + "accuracy"] = ratio(correct, rows.size());
    if (circular) {
        std::size_t groups_correct = 0;
        for (const auto& [g, ok] : group_correct) groups_correct += ok;
        m[prefix + "circular_accuracy"] = ratio(groups_correct, group_correct.size());
    }
    m[prefix + "n"] = rows.size();
    m[prefix + "unparsed"] = unparsed;
}

inline Json mcq_metrics(const std::vector<const Scored*>& lines, bool circular) {
    Json m;
    mcq_counts(lines, "", circular, m);
    for (const auto& [category, rows] : by_category(lines)) mcq_counts(rows, category + "/", circular, m);
    return m;
}

// {"<benchmark>": {"<ablation>": {"<metric>": value, ...}}}, benchmarks and
// ablations in order of first appearance. A (benchmark, id, ablation) seen
// twice is refused: it would count twice (join shards with merge).
inline Json score(const std::vector<Scored>& lines) {
    std::vector<std::string> benchmarks;
    std::map<std::string, std::vector<std::string>> ablations;
    std::map<std::pair<std::string, std::string>, std::vector<const Scored*>> groups;
    std::map<std::tuple<std::string, std::string, std::string>, std::string> seen;
    for (const Scored& s : lines) {
        const ResultLine& r = s.line;
        benchmark_from_name(r.benchmark, s.where + ": \"benchmark\"");
        const auto [it, added] = seen.emplace(std::make_tuple(r.benchmark, r.id, r.ablation), s.where);
        if (!added)
            fail(s.where, ": question ", r.id, " of ", r.benchmark, " under ablation ", r.ablation,
                 " was already read at ", it->second);
        if (!ablations.count(r.benchmark)) benchmarks.push_back(r.benchmark);
        auto& list = ablations[r.benchmark];
        if (std::find(list.begin(), list.end(), r.ablation) == list.end()) list.push_back(r.ablation);
        groups[{r.benchmark, r.ablation}].push_back(&s);
    }
    Json out = Json::object();
    for (const auto& b : benchmarks)
        for (const auto& a : ablations[b]) {
            const auto& rows = groups[{b, a}];
            switch (benchmark_from_name(b, "benchmark")) {
                case Benchmark::Mme: out[b][a] = mme_metrics(rows); break;
                case Benchmark::Pope: out[b][a] = pope_metrics(rows); break;
                case Benchmark::Vqa: out[b][a] = vqa_metrics(rows); break;
                case Benchmark::Mmbench: out[b][a] = mcq_metrics(rows, true); break;
                case Benchmark::Scienceqa:
                case Benchmark::Mcq:
                case Benchmark::TextMcq: out[b][a] = mcq_metrics(rows, false); break;
            }
        }
    return out;
}

// The result lines of run files (headers skipped, a partial last line of a
// killed run left out).
inline std::vector<Scored> read_results(const std::vector<std::string>& paths) {
    std::vector<Scored> out;
    for (const auto& path : paths) {
        const RunFile f = read_run_file(path);
        for (const auto& [number, j] : f.lines) {
            const std::string where = path + ":" + std::to_string(number);
            out.push_back({where, result_from_json(j, where)});
        }
    }
    return out;
}

}  // namespace mplug_owl2::eval
