// `mplug-owl2 ablate`: how much each modality-adaptive module matters. Every
// case of a cases file (a prompt with its images) runs under the official
// routing and under each ablation of a grid — policies (text, visual, swap)
// × layer choices × part choices, each ablation a MamRouting — and one table
// row per case and routing compares the ablated model with the official one
// on the official model's greedy continuation g_0 .. g_{N−1}:
//   kl_prompt       KL(P_official ‖ P_ablated) in nats, P the softmax of the
//                   logits at the prompt's last position (the distribution
//                   of g_0);
//   kl_mean         the same KL averaged over the N positions that predict
//                   g_0 .. g_{N−1}: the prompt's last one, then the ablated
//                   model fed g_0 .. g_{N−2} through its cache (teacher
//                   forcing with the official ids);
//   top1_prompt     1 if the ablated model's most likely token at the
//                   prompt's last position is g_0, else 0;
//   top1_agreement  the fraction of the N positions where it is g_t;
//   answer_ids      the ablated model's own greedy answer (at most
//                   --max-new-tokens ids, stopping at end-of-sequence unless
//                   --ignore-eos), answer_text its text with a tokenizer.model.
// The official row of each case has KL 0, agreement 1 and the official answer.
// N is the number of ids of the official answer. The format of the cases
// file and of the table is in docs/research_tools.md.
#pragma once

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common_options.hpp"
#include "mplug_owl2/io/atomic_file.hpp"
#include "mplug_owl2/io/tokenizer.hpp"

namespace cli {
namespace ablate_detail {

struct AblateOptions {
    ModelOptions model;
    std::string cases, out;
    std::vector<std::string> only;  // --case: run only these
    std::string policies, layers, parts;  // empty: the file's grid, else the defaults
    std::size_t max_new_tokens = 8;
    bool ignore_eos = false;
};

// One prompt of the cases file.
struct AblateCase {
    std::string name;
    std::vector<std::int64_t> ids;  // with −200 markers
    std::vector<std::string> images;
    std::string aspect;  // empty: the command line's / config.json's
};

// One routing of the grid with its labels in the table.
struct Ablation {
    mplug_owl2::MamRouting routing;
    std::string policy, layers, parts;
};

// One row of the table.
struct AblationRow {
    std::string case_name;
    Ablation ablation;
    double kl_prompt = 0, kl_mean = 0, top1_prompt = 0, top1_agreement = 0;
    std::size_t positions = 0;
    std::vector<std::int64_t> answer_ids;
    std::string answer_text;
    bool has_text = false;
};

// ---- the cases file ---------------------------------------------------------------------

inline std::string folder_of(const std::string& path) {
    const auto slash = path.rfind('/');
    return slash == std::string::npos ? "." : path.substr(0, slash);
}

// A list of strings from the grid of the file or the command line.
inline std::vector<std::string> grid_items(const nlohmann::json& j, const std::string& what) {
    std::vector<std::string> out;
    if (!j.is_array()) mplug_owl2::fail(what, ": expected a list of strings");
    for (const auto& v : j) {
        if (!v.is_string()) mplug_owl2::fail(what, ": expected a list of strings, found ", mplug_owl2::config_detail::Fields::describe(v));
        out.push_back(v.get<std::string>());
    }
    return out;
}

inline std::vector<AblateCase> read_cases(const std::string& path, const mplug_owl2::Tokenizer* tokenizer,
                                          nlohmann::json& grid) {
    using mplug_owl2::fail;
    std::ifstream in(path);
    if (!in) fail(path, ": cannot open the cases file");
    nlohmann::json j;
    try {
        in >> j;
    } catch (const std::exception& e) {
        fail(path, ": not valid JSON (", e.what(), ")");
    }
    // references and moves, never copies: copying a JSON value recurses as
    // deep as it is nested
    const nlohmann::json& list = j.is_object() && j.contains("cases") ? j["cases"] : j;
    if (!list.is_array() || list.empty())
        fail(path, ": expected a non-empty list of cases (or an object with \"cases\")");
    if (j.is_object() && j.contains("grid")) grid = std::move(j["grid"]);
    std::vector<AblateCase> cases;
    std::set<std::string> names;
    for (std::size_t i = 0; i < list.size(); ++i) {
        const nlohmann::json& c = list[i];
        const std::string where = path + ": case " + std::to_string(i);
        if (!c.is_object() || !c.contains("name") || !c["name"].is_string())
            fail(where, ": expected an object with a \"name\"");
        AblateCase a;
        a.name = c["name"].get<std::string>();
        if (!names.insert(a.name).second) fail(where, ": the name ", a.name, " is used twice");
        const bool has_ids = c.contains("input_ids"), has_prompt = c.contains("prompt");
        if (has_ids == has_prompt) fail(where, " (", a.name, "): give exactly one of \"input_ids\" and \"prompt\"");
        if (has_ids) {
            if (!c["input_ids"].is_array()) fail(where, " (", a.name, "): \"input_ids\" must be a list of integers");
            for (const auto& id : c["input_ids"]) {
                if (!id.is_number_integer()) fail(where, " (", a.name, "): \"input_ids\" holds ", mplug_owl2::config_detail::Fields::describe(id));
                a.ids.push_back(id.get<std::int64_t>());
            }
        } else {
            if (!tokenizer)
                fail(where, " (", a.name, "): a \"prompt\" needs tokenizer.model in the model folder; give "
                     "\"input_ids\" instead");
            if (!c["prompt"].is_string()) fail(where, " (", a.name, "): \"prompt\" must be a string");
            a.ids = tokenizer->encode_prompt(c["prompt"].get<std::string>());
        }
        if (c.contains("images")) {
            for (const auto& im : grid_items(c["images"], where + " images")) {
                a.images.push_back(!im.empty() && im[0] == '/' ? im : folder_of(path) + "/" + im);
            }
        }
        if (c.contains("image_aspect_ratio") && !c["image_aspect_ratio"].is_null()) {
            const nlohmann::json& r = c["image_aspect_ratio"];
            if (!r.is_string() || (r != "pad" && r != "resize"))
                fail(where, " (", a.name, "): image_aspect_ratio ", mplug_owl2::config_detail::Fields::describe(r), ", expected \"pad\" or \"resize\"");
            a.aspect = r.get<std::string>();
        }
        cases.push_back(std::move(a));
    }
    return cases;
}

// ---- the grid ---------------------------------------------------------------------------

// Layer choices: "all" -> {} (every layer at once), "each" -> {0}, {1}, …, "0+2" -> {0, 2}.
inline std::vector<std::set<std::size_t>> layer_choices(const std::vector<std::string>& items, std::size_t n_layers) {
    std::vector<std::set<std::size_t>> out;
    for (const auto& item : items) {
        if (item == "all") {
            out.push_back({});
        } else if (item == "each") {
            for (std::size_t l = 0; l < n_layers; ++l) out.push_back({l});
        } else {
            std::set<std::size_t> s;
            std::stringstream in(item);
            std::string one;
            while (std::getline(in, one, '+')) {
                const long long v = parse_integer(one, "ablation layers \"" + item + "\"");
                if (v < 0 || static_cast<std::size_t>(v) >= n_layers)
                    mplug_owl2::fail("ablation layers: layer ", v, " does not exist (the decoder has ", n_layers,
                                     " layers)");
                s.insert(static_cast<std::size_t>(v));
            }
            if (s.empty()) mplug_owl2::fail("ablation layers: empty item");
            out.push_back(s);
        }
    }
    return out;
}

// Part choices: "all" -> {} (all four), "each" -> one per part, "k_proj+v_proj" -> {k_proj, v_proj}.
inline std::vector<std::set<mplug_owl2::MamPart>> part_choices(const std::vector<std::string>& items) {
    using namespace mplug_owl2;
    std::vector<std::set<MamPart>> out;
    for (const auto& item : items) {
        if (item == "all") {
            out.push_back({});
        } else if (item == "each") {
            for (MamPart p : all_mam_parts()) out.push_back({p});
        } else {
            std::set<MamPart> s;
            std::stringstream in(item);
            std::string one;
            while (std::getline(in, one, '+')) s.insert(mam_part_from_name(one));
            out.push_back(s);
        }
    }
    return out;
}

template <class Set, class Name>
std::string set_label(const Set& s, Name name) {
    if (s.empty()) return "all";
    std::string out;
    for (const auto& x : s) out += (out.empty() ? "" : "+") + name(x);
    return out;
}

// policies × layer choices × part choices, in that order; the official routing is every case's first row.
inline std::vector<Ablation> ablation_grid(const AblateOptions& o, const nlohmann::json& file_grid,
                                           std::size_t n_layers) {
    using namespace mplug_owl2;
    auto items = [&](const std::string& option, const char* key, const std::vector<std::string>& dflt) {
        if (!option.empty()) return split_list(option, std::string("--") + key);
        if (file_grid.contains(key)) return grid_items(file_grid[key], std::string("grid.") + key);
        return dflt;
    };
    std::vector<MamPolicy> policies;
    for (const auto& p : items(o.policies, "policies", {"text", "visual", "swap"})) {
        const MamPolicy policy = mam_policy_from_name(p);
        if (policy != MamPolicy::Official && std::find(policies.begin(), policies.end(), policy) == policies.end())
            policies.push_back(policy);  // official is the baseline row anyway
    }
    const auto layers = layer_choices(items(o.layers, "layers", {"all", "each"}), n_layers);
    const auto parts = part_choices(items(o.parts, "parts", {"all"}));
    std::vector<Ablation> grid;
    for (MamPolicy policy : policies)
        for (const auto& l : layers)
            for (const auto& p : parts) {
                Ablation a;
                a.routing.policy = policy;
                a.routing.layers = l;
                a.routing.parts = p;
                a.policy = mam_policy_name(policy);
                a.layers = set_label(l, [](std::size_t x) { return std::to_string(x); });
                a.parts = set_label(p, [](MamPart x) { return std::string(mam_part_name(x)); });
                grid.push_back(a);
            }
    return grid;
}

// ---- the measures ---------------------------------------------------------------------------

// KL(softmax(p) ‖ softmax(q)) in nats, computed in double from log-softmaxes.
template <class T>
double kl_divergence(const T* p, const T* q, std::size_t n) {
    auto log_softmax = [n](const T* x) {
        const double m = double(*std::max_element(x, x + n));
        double sum = 0;
        for (std::size_t j = 0; j < n; ++j) sum += std::exp(double(x[j]) - m);
        std::vector<double> out(n);
        for (std::size_t j = 0; j < n; ++j) out[j] = double(x[j]) - m - std::log(sum);
        return out;
    };
    const std::vector<double> lp = log_softmax(p), lq = log_softmax(q);
    double kl = 0;
    for (std::size_t j = 0; j < n; ++j) kl += std::exp(lp[j]) * (lp[j] - lq[j]);
    return kl;
}

// The first most likely id, as greedy decoding picks it.
template <class T>
std::int64_t argmax(const T* x, std::size_t n) {
    return static_cast<std::int64_t>(std::max_element(x, x + n) - x);
}

// The case's ids against its images, the vocabulary and the context, the error naming the case.
inline void check_case_prompt(const AblateCase& c, const mplug_owl2::ModelConfig& config, std::size_t max_new_tokens) {
    try {
        mplug_owl2::check_prompt(c.ids, c.images.size(), static_cast<std::size_t>(config.text.vocab_size));
        check_prompt_context(c.ids, max_new_tokens, config, "--max-new-tokens");
    } catch (const mplug_owl2::Error& e) {
        mplug_owl2::fail("case ", c.name, ": ", e.what());
    }
}

// One case under every routing: the images and the splice are computed once.
template <class T>
std::vector<AblationRow> ablate_case(mplug_owl2::MplugOwl2LlamaForCausalLM<T>& model, const AblateOptions& o,
                                     const mplug_owl2::ModelConfig& config, const AblateCase& c,
                                     const std::vector<Ablation>& grid, const mplug_owl2::Tokenizer* tokenizer) {
    using namespace mplug_owl2;
    // 1. the prompt and its images
    ModelOptions images_as = o.model;
    if (!c.aspect.empty()) images_as.aspect = c.aspect;
    const xt::xtensor<T, 4> pixels = image_pixels<T>(images_as, config, c.images);
    const Hooks<T> none;
    const PreparedInputs<T> in = model.prepare_inputs(c.ids, model.encode_images(pixels, none), none);
    const std::size_t V = static_cast<std::size_t>(config.text.vocab_size);
    GenerationConfig g;
    g.max_new_tokens = o.max_new_tokens;
    g.stop_at_eos = !o.ignore_eos;

    // 2. the official run: its greedy answer and the distributions of g_0 .. g_{N−1}
    model.set_mam_routing(MamRouting{});
    KVCache<T> cache = model.new_cache();
    const Matrix<T> logits = model.forward(in, cache, none);
    const Generation<T> official = model.generate(logits, cache, g, none);
    const std::vector<std::int64_t>& cont = official.ids;
    const std::size_t N = cont.size();
    auto official_row = [&](std::size_t t) {  // the distribution of g_t
        return t == 0 ? &logits(logits.shape(0) - 1, 0) : &official.step_logits(t - 1, 0);
    };

    std::vector<AblationRow> rows;
    auto text_of = [&](AblationRow& r) {
        if (!tokenizer) return;
        r.has_text = true;
        r.answer_text = tokenizer->decode(r.answer_ids);
    };
    AblationRow base;
    base.case_name = c.name;
    base.ablation.policy = "official";
    base.ablation.layers = base.ablation.parts = "all";
    base.top1_prompt = base.top1_agreement = 1;
    base.positions = N;
    base.answer_ids = cont;
    text_of(base);
    rows.push_back(base);

    // 3. each ablation: teacher-forced on the official ids, then its own answer
    for (const Ablation& a : grid) {
        model.set_mam_routing(a.routing);
        KVCache<T> forced = model.new_cache();
        const Matrix<T> ablated_logits = model.forward(in, forced, none);
        KVCache<T> own = forced;
        AblationRow r;
        r.case_name = c.name;
        r.ablation = a;
        r.positions = N;
        double kl_sum = 0, agree = 0;
        Matrix<T> step;
        for (std::size_t t = 0; t < N; ++t) {
            if (t > 0) step = model.decode_step(cont[t - 1], forced, none);
            const T* q = t == 0 ? &ablated_logits(ablated_logits.shape(0) - 1, 0) : step.data();
            const double kl = kl_divergence(official_row(t), q, V);
            const bool same = argmax(q, V) == cont[t];
            if (t == 0) {
                r.kl_prompt = kl;
                r.top1_prompt = same ? 1 : 0;
            }
            kl_sum += kl;
            agree += same ? 1 : 0;
        }
        r.kl_mean = kl_sum / double(N);
        r.top1_agreement = agree / double(N);
        r.answer_ids = model.generate(ablated_logits, own, g, none).ids;
        text_of(r);
        rows.push_back(r);
    }
    model.set_mam_routing(MamRouting{});
    return rows;
}

// ---- the table ------------------------------------------------------------------------------

inline std::string number(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return buf;
}

inline std::string csv_field(const std::string& s) {
    if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
    std::string out = "\"";
    for (char ch : s) out += ch == '"' ? std::string("\"\"") : std::string(1, ch);
    return out + "\"";
}

inline void write_csv(std::ostream& out, const std::vector<AblationRow>& rows) {
    const bool text = !rows.empty() && rows.front().has_text;
    out << "case,policy,layers,parts,kl_prompt,kl_mean,top1_prompt,top1_agreement,positions,answer_ids"
        << (text ? ",answer_text" : "") << "\n";
    for (const auto& r : rows) {
        std::string ids;
        for (std::size_t i = 0; i < r.answer_ids.size(); ++i) ids += (i ? " " : "") + std::to_string(r.answer_ids[i]);
        out << csv_field(r.case_name) << ',' << r.ablation.policy << ',' << r.ablation.layers << ','
            << r.ablation.parts << ',' << number(r.kl_prompt) << ',' << number(r.kl_mean) << ','
            << number(r.top1_prompt) << ',' << number(r.top1_agreement) << ',' << r.positions << ',' << ids;
        if (text) out << ',' << csv_field(r.answer_text);
        out << "\n";
    }
}

inline nlohmann::json rows_json(const std::vector<AblationRow>& rows) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& r : rows) {
        nlohmann::json j = {{"case", r.case_name},
                            {"policy", r.ablation.policy},
                            {"layers", r.ablation.layers},
                            {"parts", r.ablation.parts},
                            {"kl_prompt", r.kl_prompt},
                            {"kl_mean", r.kl_mean},
                            {"top1_prompt", r.top1_prompt},
                            {"top1_agreement", r.top1_agreement},
                            {"positions", r.positions},
                            {"answer_ids", r.answer_ids}};
        if (r.has_text) j["answer_text"] = r.answer_text;
        list.push_back(j);
    }
    return list;
}

inline bool ends_with(const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

template <class T>
void run_ablate(const AblateOptions& o) {
    using namespace mplug_owl2;
    // 1. the output's format, the tokenizer, the cases, then the model (the slow part)
    const bool json = ends_with(o.out, ".json");
    if (!o.out.empty() && !json && !ends_with(o.out, ".csv"))
        fail("--out ", o.out, ": expected a file name ending in .csv or .json");
    if (o.max_new_tokens == 0) fail("--max-new-tokens 0: the measures need at least the first answer token");
    if (!o.out.empty()) check_output_file(o.out, "--out");
    const ModelConfig config = load_config(o.model.model_dir + "/config.json");
    std::unique_ptr<Tokenizer> tokenizer;
    if (std::ifstream(o.model.model_dir + "/tokenizer.model").good())
        tokenizer = std::make_unique<Tokenizer>(o.model.model_dir);
    nlohmann::json file_grid = nlohmann::json::object();
    std::vector<AblateCase> cases = read_cases(o.cases, tokenizer.get(), file_grid);
    if (!o.only.empty()) {
        for (const auto& name : o.only)
            if (std::none_of(cases.begin(), cases.end(), [&](const AblateCase& c) { return c.name == name; }))
                fail("--case ", name, ": no such case in ", o.cases);
        cases.erase(std::remove_if(cases.begin(), cases.end(),
                                   [&](const AblateCase& c) {
                                       return std::find(o.only.begin(), o.only.end(), c.name) == o.only.end();
                                   }),
                    cases.end());
    }
    for (const AblateCase& c : cases) check_case_prompt(c, config, o.max_new_tokens);
    const std::vector<Ablation> grid =
        ablation_grid(o, file_grid, static_cast<std::size_t>(config.text.num_hidden_layers));
    MplugOwl2LlamaForCausalLM<T> model = load_cli_model<T>(o.model, config);

    // 2. every case under every routing
    std::vector<AblationRow> rows;
    for (const AblateCase& c : cases) {
        const auto some = ablate_case<T>(model, o, config, c, grid, tokenizer.get());
        rows.insert(rows.end(), some.begin(), some.end());
    }

    // 3. the table, on stdout or as a file written through a temporary name
    std::ostringstream out;
    if (json) {
        nlohmann::json j = {{"model", o.model.model_dir},
                            {"dtype", o.model.dtype},
                            {"max_new_tokens", o.max_new_tokens},
                            {"stop_at_eos", !o.ignore_eos},
                            {"rows", rows_json(rows)}};
        out << j.dump(1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";  // answers may cut UTF-8
    } else {
        write_csv(out, rows);
    }
    if (o.out.empty())
        std::cout << out.str() << std::flush;
    else
        write_file_atomically(o.out, out.str());
}

}  // namespace ablate_detail

inline void register_ablate(CLI::App& app) {
    using namespace ablate_detail;
    auto* sub = app.add_subcommand(
        "ablate", "Compare the official model with ablations of the modality-adaptive module on a set of prompts");
    auto o = std::make_shared<AblateOptions>();
    add_model_options(sub, o->model);
    // the grid gives the routings: the single-routing options do not apply here
    for (const char* name : {"--mam", "--mam-parts", "--mam-layers"}) sub->remove_option(sub->get_option(name));
    sub->add_option("--cases", o->cases,
                    "JSON file of cases: [{name, input_ids or prompt, images, image_aspect_ratio}] "
                    "(reference_outputs/tiny/cases.json works as is)")
        ->required();
    sub->add_option("--out", o->out, "table file, .csv or .json (default: CSV on stdout)");
    sub->add_option("--case", o->only, "run only this case (repeatable)");
    sub->add_option("--policies", o->policies,
                    "ablation policies, e.g. text,visual,swap (default: the file's, else these)");
    sub->add_option("--layers", o->layers,
                    "layer choices: all, each (one per layer) or layers joined by +, e.g. all,each,0+1 "
                    "(default: the file's, else all,each)");
    sub->add_option("--parts", o->parts,
                    "part choices: all, each (one per part) or parts joined by +, e.g. all,k_proj+v_proj "
                    "(default: the file's, else all)");
    sub->add_option("--max-new-tokens", o->max_new_tokens, "length of the greedy answers compared (default 8)")
        ->check(count_validator());
    sub->add_flag("--ignore-eos", o->ignore_eos, "do not stop the answers at the end-of-sequence id");
    sub->callback([o] { with_dtype(o->model, [&](auto tag) { run_ablate<decltype(tag)>(*o); }); });
}

}  // namespace cli
