// `mplug-owl2 ablate` end to end on the tiny model. The table's numbers are
// checked against the official code's reference outputs where those exist
// (the official greedy answers; the text policy on every part and layer is
// the reference case mam_text_all) and otherwise against the same measures
// computed here through the API: KL divergences from explicitly normalised
// softmaxes, teacher forcing and greedy decoding written out step by step.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli_run.hpp"
#include "mplug_owl2/io/image.hpp"
#include "mplug_owl2/io/tokenizer.hpp"
#include "mplug_owl2/model/image_processor.hpp"
#include "mplug_owl2/model/load_model.hpp"
#include "parity.hpp"

using namespace mplug_owl2;

namespace {

const std::string kCli = MPLUG_OWL2_CLI;
const std::string kTmp = MPLUG_OWL2_TEST_TMP;
const std::string kTiny = parity::tiny_dir();

using cli_run::Run;

Run ablate(const std::string& args, const std::string& tag, const std::string& model = kTiny) {
    return cli_run::run("ablate --model '" + model + "' " + args, "ablate_" + tag);
}

nlohmann::json read_json(const std::string& path) {
    std::ifstream in(path);
    REQUIRE(in.good());
    nlohmann::json j;
    in >> j;
    return j;
}

// KL(softmax(p) ‖ softmax(q)) from the normalised probabilities.
double kl(const double* p, const double* q, std::size_t n) {
    auto softmax = [n](const double* x) {
        double m = x[0];
        for (std::size_t j = 1; j < n; ++j) m = std::max(m, x[j]);
        std::vector<double> e(n);
        double z = 0;
        for (std::size_t j = 0; j < n; ++j) z += e[j] = std::exp(x[j] - m);
        for (double& v : e) v /= z;
        return e;
    };
    const auto a = softmax(p), b = softmax(q);
    double s = 0;
    for (std::size_t j = 0; j < n; ++j)
        if (a[j] > 0) s += a[j] * std::log(a[j] / b[j]);
    return s;
}

std::int64_t first_max(const double* x, std::size_t n) {
    std::size_t best = 0;
    for (std::size_t j = 1; j < n; ++j)
        if (x[j] > x[best]) best = j;
    return static_cast<std::int64_t>(best);
}

struct Measures {
    double kl_prompt = 0, kl_mean = 0, top1_prompt = 0, top1_agreement = 0;
    std::vector<std::int64_t> official, answer;
};

// The table's measures for one case and routing, through the API, with n
// answer ids and no stop at end-of-sequence.
Measures measure(MplugOwl2LlamaForCausalLM<double>& m, const std::string& case_name, const MamRouting& r,
                 std::size_t n) {
    const nlohmann::json c = parity::tiny_case(case_name);
    parity::Case ref(case_name);
    const auto pixels = ref.pixel_values<double>(c["images"].size());
    const Hooks<double> none;
    const auto in =
        m.prepare_inputs(c["input_ids"].get<std::vector<std::int64_t>>(), m.encode_images(pixels, none), none);
    const std::size_t V = 320;
    auto last_row = [V](const Matrix<double>& x) {
        return std::vector<double>(&x(x.shape(0) - 1, 0), &x(x.shape(0) - 1, 0) + V);
    };

    // the official distributions and greedy ids
    m.set_mam_routing(MamRouting{});
    KVCache<double> cache = m.new_cache();
    std::vector<std::vector<double>> P = {last_row(m.forward(in, cache, none))};
    Measures out;
    for (std::size_t t = 0; t < n; ++t) {
        out.official.push_back(first_max(P[t].data(), V));
        if (t + 1 < n) P.push_back(last_row(m.decode_step(out.official[t], cache, none)));
    }
    // the ablated model fed the official ids
    m.set_mam_routing(r);
    KVCache<double> forced = m.new_cache();
    std::vector<double> q = last_row(m.forward(in, forced, none));
    for (std::size_t t = 0; t < n; ++t) {
        if (t > 0) q = last_row(m.decode_step(out.official[t - 1], forced, none));
        const double d = kl(P[t].data(), q.data(), V);
        const double same = first_max(q.data(), V) == out.official[t] ? 1 : 0;
        if (t == 0) {
            out.kl_prompt = d;
            out.top1_prompt = same;
        }
        out.kl_mean += d / double(n);
        out.top1_agreement += same / double(n);
    }
    // its own greedy answer
    KVCache<double> own = m.new_cache();
    q = last_row(m.forward(in, own, none));
    for (std::size_t t = 0; t < n; ++t) {
        out.answer.push_back(first_max(q.data(), V));
        if (t + 1 < n) q = last_row(m.decode_step(out.answer.back(), own, none));
    }
    m.set_mam_routing(MamRouting{});
    return out;
}

const nlohmann::json& find_row(const nlohmann::json& rows, const std::string& c, const std::string& policy,
                               const std::string& layers, const std::string& parts) {
    for (const auto& r : rows)
        if (r["case"] == c && r["policy"] == policy && r["layers"] == layers && r["parts"] == parts) return r;
    FAIL("no row " << c << " " << policy << " " << layers << " " << parts);
    return rows[0];
}

}  // namespace

TEST_CASE("ablate writes the measures of every case and routing of the grid", "[cli][ablate]") {
    REQUIRE(!kCli.empty());
    const std::string out = kTmp + "/ablate_grid.json";
    std::remove(out.c_str());
    const Run r = ablate("--cases '" + kTiny + "/cases.json' --dtype double --max-new-tokens 3 --ignore-eos "
                         "--policies text,swap --layers all,each --parts all,k_proj+v_proj --out '" + out + "'",
                         "grid");
    INFO(r.err);
    REQUIRE(r.code == 0);
    const nlohmann::json j = read_json(out);
    const nlohmann::json& rows = j["rows"];

    // 1. the rows: per case the official routing, then policies × layer choices × part choices
    const auto cases = parity::tiny_cases();
    REQUIRE(rows.size() == cases.size() * (1 + 2 * 3 * 2));
    std::size_t i = 0;
    for (const auto& c : cases) {
        CHECK(rows[i]["case"] == c["name"]);
        CHECK(rows[i]["policy"] == "official");
        CHECK(rows[i]["kl_prompt"] == 0.0);
        CHECK(rows[i]["top1_agreement"] == 1.0);
        ++i;
        for (const char* policy : {"text", "swap"})
            for (const char* layers : {"all", "0", "1"})
                for (const char* parts : {"all", "k_proj+v_proj"}) {
                    INFO("row " << i);
                    CHECK(rows[i]["case"] == c["name"]);
                    CHECK(rows[i]["policy"] == policy);
                    CHECK(rows[i]["layers"] == layers);
                    CHECK(rows[i]["parts"] == parts);
                    CHECK(rows[i]["positions"] == 3);
                    CHECK(rows[i]["answer_ids"].size() == 3);
                    ++i;
                }
    }

    // 2. the official answers are the official code's greedy ids (mam_text_all's are those of its
    //    ablation, which ablate ignores: its official row is image_then_text's, the same prompt)
    for (const auto& c : cases) {
        if (!c["ablate"].is_null()) {
            CHECK(find_row(rows, c["name"], "official", "all", "all")["answer_ids"] ==
                  find_row(rows, "image_then_text", "official", "all", "all")["answer_ids"]);
            continue;
        }
        const auto expected = c["generated_ids"].get<std::vector<std::int64_t>>();
        CHECK(find_row(rows, c["name"], "official", "all", "all")["answer_ids"].get<std::vector<std::int64_t>>() ==
              std::vector<std::int64_t>(expected.begin(), expected.begin() + 3));
    }

    // 3. text on every part and layer is the official code's mam_text_all case: same answer, and the
    //    prompt's KL from the two reference logits
    const auto& text_all = find_row(rows, "image_then_text", "text", "all", "all");
    CHECK(text_all["answer_ids"].get<std::vector<std::int64_t>>() ==
          parity::tiny_case("mam_text_all")["generated_ids"].get<std::vector<std::int64_t>>());
    const auto official_logits = parity::Case("image_then_text").get("logits");
    const auto ablated_logits = parity::Case("mam_text_all").get("logits");
    const std::size_t L = official_logits.shape(0), V = official_logits.shape(1);
    const double kl_ref = kl(official_logits.data() + (L - 1) * V, ablated_logits.data() + (L - 1) * V, V);
    CHECK(kl_ref > 0.01);
    CHECK(text_all["kl_prompt"].get<double>() == Approx(kl_ref).epsilon(1e-8));
    // a case without images has nothing to route differently under text
    CHECK(find_row(rows, "text_only", "text", "all", "all")["kl_mean"] == 0.0);

    // 4. rows recomputed through the API
    MplugOwl2LlamaForCausalLM<double> m = load_model<double>(kTiny);
    struct Probe {
        std::string c, policy, layers, parts;
        MamRouting routing;
    };
    const std::vector<Probe> probes = {
        {"image_then_text", "text", "all", "all", MamRouting{MamPolicy::Text, {}, {}}},
        {"two_images", "swap", "1", "k_proj+v_proj", MamRouting{MamPolicy::Swap, {MamPart::KProj, MamPart::VProj}, {1}}},
        {"photo_jpeg", "text", "0", "all", MamRouting{MamPolicy::Text, {}, {0}}},
        {"image_then_text", "swap", "all", "k_proj+v_proj",
         MamRouting{MamPolicy::Swap, {MamPart::KProj, MamPart::VProj}, {}}},
    };
    for (const auto& p : probes) {
        INFO(p.c << " " << p.policy << " layers " << p.layers << " parts " << p.parts);
        const auto& row = find_row(rows, p.c, p.policy, p.layers, p.parts);
        const Measures expected = measure(m, p.c, p.routing, 3);
        CHECK(row["kl_prompt"].get<double>() == Approx(expected.kl_prompt).epsilon(1e-9));
        CHECK(row["kl_mean"].get<double>() == Approx(expected.kl_mean).epsilon(1e-9));
        CHECK(row["top1_prompt"].get<double>() == expected.top1_prompt);
        CHECK(row["top1_agreement"].get<double>() == Approx(expected.top1_agreement).epsilon(1e-15));
        CHECK(row["answer_ids"].get<std::vector<std::int64_t>>() == expected.answer);
        CHECK(find_row(rows, p.c, "official", "all", "all")["answer_ids"].get<std::vector<std::int64_t>>() ==
              expected.official);
        CHECK(expected.kl_mean > 0);
    }
}

TEST_CASE("ablate writes CSV and takes its grid and prompts from the cases file", "[cli][ablate]") {
    // a model folder with the tokenizer fixture, whose 320 ids fit the tiny model
    const std::string model = kTmp + "/ablate_model";
    ::mkdir(model.c_str(), 0755);
    const std::string fixtures = std::string(MPLUG_OWL2_FIXTURE_DIR) + "/tokenizer/";
    for (const auto& f : std::vector<std::pair<std::string, std::string>>{
             {kTiny + "/config.json", "config.json"},
             {kTiny + "/model.safetensors", "model.safetensors"},
             {fixtures + "tokenizer.model", "tokenizer.model"},
             {fixtures + "tokenizer_config.json", "tokenizer_config.json"},
             {fixtures + "special_tokens_map.json", "special_tokens_map.json"}}) {
        std::remove((model + "/" + f.second).c_str());
        REQUIRE(::symlink(f.first.c_str(), (model + "/" + f.second).c_str()) == 0);
    }
    const std::string cases = kTmp + "/ablate_cases.json";
    {
        std::ofstream f(cases);
        f << R"({"grid": {"policies": ["visual"], "layers": ["1"], "parts": ["each"]},
                 "cases": [{"name": "asked, with \"quotes\"", "prompt": "<|image|>Describe the image.",
                            "images": [")" << kTiny << R"(/synthetic_64x64.png"], "image_aspect_ratio": "resize"}]})";
    }
    const std::string out = kTmp + "/ablate_table.csv";
    std::remove(out.c_str());
    const Run r = ablate("--cases '" + cases + "' --dtype double --max-new-tokens 4 --ignore-eos --out '" + out + "'",
                         "csv", model);
    INFO(r.err);
    REQUIRE(r.code == 0);
    std::ifstream in(out);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    REQUIRE(lines.size() == 1 + 1 + 4);  // header, official, visual in layer 1 for each of the four parts
    CHECK(lines[0] ==
          "case,policy,layers,parts,kl_prompt,kl_mean,top1_prompt,top1_agreement,positions,answer_ids,answer_text");
    const char* parts[] = {"input_layernorm", "post_attention_layernorm", "k_proj", "v_proj"};
    for (std::size_t k = 0; k < 4; ++k)
        CHECK(lines[2 + k].rfind(std::string("\"asked, with \"\"quotes\"\"\",visual,1,") + parts[k] + ",", 0) == 0);

    // the official row: the prompt tokenised with the image rule, its answer and the answer's text
    const Tokenizer tok(model);
    const std::vector<std::int64_t> ids = tok.encode_prompt("<|image|>Describe the image.");
    REQUIRE(ids.front() == kImageTokenIndex);
    MplugOwl2LlamaForCausalLM<double> m = load_model<double>(kTiny);
    ImageProcessorConfig pre;
    pre.size = pre.crop_size = 56;
    const ProcessedImage img = process_image(load_image(kTiny + "/synthetic_64x64.png"), "resize", pre);
    xt::xtensor<double, 4> pixels = xt::xtensor<double, 4>::from_shape({1, 3, 56, 56});
    std::copy(img.pixel_values.begin(), img.pixel_values.end(), pixels.begin());
    GenerationConfig g;
    g.max_new_tokens = 4;
    g.stop_at_eos = false;
    const std::vector<std::int64_t> answer = m.generate(ids, pixels, g, Hooks<double>()).ids;
    std::string id_text;
    for (std::size_t k = 0; k < answer.size(); ++k) id_text += (k ? " " : "") + std::to_string(answer[k]);
    const std::string text = tok.decode(answer);
    std::string quoted = text;
    if (text.find_first_of(",\"\n\r") != std::string::npos) {
        quoted = "\"";
        for (char ch : text) quoted += ch == '"' ? std::string("\"\"") : std::string(1, ch);
        quoted += "\"";
    }
    CHECK(lines[1] == "\"asked, with \"\"quotes\"\"\",official,all,all,0,0,1,1,4," + id_text + "," + quoted);

    // --policies on the command line overrides the file's grid
    const Run over = ablate("--cases '" + cases + "' --dtype double --policies swap,official --layers all", "override",
                            model);
    INFO(over.err);
    REQUIRE(over.code == 0);
    std::stringstream s(over.out);
    std::vector<std::string> rows;
    for (std::string line; std::getline(s, line);) rows.push_back(line);
    REQUIRE(rows.size() == 1 + 1 + 4);
    CHECK(rows[2].find(",swap,all,input_layernorm,") != std::string::npos);
}

TEST_CASE("ablate refuses bad cases and grids with one error line and exit code 2", "[cli][ablate]") {
    const std::string cases = kTiny + "/cases.json";
    auto write = [](const std::string& name, const std::string& text) {
        const std::string path = kTmp + "/" + name;
        std::ofstream(path) << text;
        return path;
    };
    struct Bad {
        std::string args, message;
    };
    const std::vector<Bad> bad = {
        {"--cases '" + cases + "' --policies text,sideways", "modality-adaptive policy sideways"},
        {"--cases '" + cases + "' --layers 0+2", "layer 2 does not exist"},
        {"--cases '" + cases + "' --parts q_proj", "modality-adaptive part q_proj"},
        {"--cases '" + cases + "' --out table.txt", "--out table.txt: expected a file name ending in .csv or .json"},
        {"--cases '" + cases + "' --case nothing", "--case nothing: no such case"},
        {"--cases '" + cases + "' --max-new-tokens 0", "--max-new-tokens 0"},
        {"--cases '" + kTmp + "/no_cases.json'", "no_cases.json: cannot open"},
        {"--cases '" + write("ablate_bad2.json", "[{\"name\": \"a\", \"input_ids\": [1, -200, 5]}]") + "'",
         "case a: input ids: 1 image marker (-200) for 0 images"},
        {"--cases '" + write("ablate_bad3.json", "[{\"name\": \"a\", \"input_ids\": [1, 5], \"prompt\": \"x\"}]") + "'",
         "give exactly one of \"input_ids\" and \"prompt\""},
        {"--cases '" + write("ablate_bad4.json", "{\"cases\": []}") + "'", "expected a non-empty list of cases"},
        {"--cases '" +
             write("ablate_bad5.json",
                   "[{\"name\": \"a\", \"input_ids\": [1, -200], \"images\": [\"none.png\"]}]") +
             "'",
         "none.png"},
        {"--cases '" +
             write("ablate_bad6.json",
                   "{\"cases\": [{\"name\": \"a\", \"input_ids\": [1]}], \"grid\": {\"layers\": [3]}}") +
             "'",
         "grid.layers: expected a list of strings"},
    };
    for (std::size_t i = 0; i < bad.size(); ++i) {
        const Run r = ablate(bad[i].args, "bad" + std::to_string(i));
        INFO("arguments: " << bad[i].args << "\nstderr: " << r.err);
        CHECK(r.code == 2);
        CHECK(r.err.rfind("error: ", 0) == 0);
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
        CHECK(r.err.find(bad[i].message) != std::string::npos);
        CHECK(r.out.empty());
    }
    const Run usage = ablate("--cases '" + cases + "' --mam text", "usage");
    CHECK(usage.code == 1);
}
