// The visual abstractor (`model.visual_abstractor`): fed the reference's
// vision output, it must reproduce every abstractor activation the official
// code recorded, for one and for two images; chained after our own vision
// encoder as well. The sin-cos tables rebuilt when a checkpoint lacks them
// must agree with the stored ones to float32 rounding, and the abstractor
// must then still reproduce the reference in float. Configurations beyond
// the reference set come from tests/fixtures/vision_variants.
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>

#include "mplug_owl2/abstractor/visual_abstractor_model.hpp"
#include "mplug_owl2/core/recorder.hpp"
#include "mplug_owl2/io/config.hpp"
#include "mplug_owl2/io/safetensors.hpp"
#include "mplug_owl2/vision/vision_model.hpp"
#include "parity.hpp"

using namespace mplug_owl2;

namespace {

const std::string kTiny = parity::tiny_dir();
const std::string kFixtures = MPLUG_OWL2_FIXTURE_DIR;
const std::string kAbstractor = "model.visual_abstractor";
const std::string kTables = "model.visual_abstractor.encoder.layers.0.crossattention.attention.";

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

// A checkpoint with some tensors removed.
class WithoutTensors : public TensorSource {
public:
    WithoutTensors(const TensorSource& src, std::function<bool(const std::string&)> hide)
        : src_(src), hide_(std::move(hide)) {}
    std::vector<std::string> names() const override {
        std::vector<std::string> out;
        for (const auto& n : src_.names())
            if (!hide_(n)) out.push_back(n);
        return out;
    }
    const TensorInfo* find(const std::string& name) const override { return hide_(name) ? nullptr : src_.find(name); }
    std::string origin(const std::string& name) const override { return src_.origin(name); }

private:
    const TensorSource& src_;
    std::function<bool(const std::string&)> hide_;
};

bool is_pos_table(const std::string& name) {
    return name.find("q_pos_embed") != std::string::npos || name.find("k_pos_embed") != std::string::npos;
}

// The reference tensor `name` as [rows, cols] in T, rows = all leading dims.
template <class T>
Matrix<T> ref_matrix(const parity::Case& ref, const std::string& name) {
    const auto a = ref.get(name);
    const std::size_t cols = a.shape().back();
    Matrix<T> m = Matrix<T>::from_shape({a.size() / cols, cols});
    std::copy(a.begin(), a.end(), m.begin());
    return m;
}

template <class T>
void check_all(const parity::Case& ref, const Recorder<T>& rec, const std::vector<std::string>& names,
               const std::string& prefix, double tol) {
    std::size_t checked = 0;
    for (const auto& name : names) {
        if (!starts_with(name, prefix)) continue;
        INFO("activation " << name);
        REQUIRE(rec.contains(name));
        CHECK(rec.at(name).shape == ref.shape(name));
        ref.check(name, rec.at(name).values, tol);
        ++checked;
    }
    CHECK(checked > 0);
}

std::vector<std::string> activation_names(const nlohmann::json& c) {
    std::vector<std::string> out;
    for (const auto& a : c["activations"]) out.push_back(a.get<std::string>());
    return out;
}

// Largest |a − b| over the table, divided by the float32 rounding allowed
// for each entry: 2^-22 · (1 + p), p the position the entry encodes. An ulp
// of ω_k (numpy's float32 power may differ from the correctly rounded one by
// that much) grows to p·2^-23 in the angle p·ω_k, the angle's own rounding
// adds up to p·2^-24 and sin/cos an ulp or two of the result.
double table_excess(const Matrix<float>& ours, const xt::xarray<double>& stored, const std::vector<double>& pos_of) {
    double worst = 0;
    const std::size_t cols = ours.shape(1);
    for (std::size_t i = 0; i < ours.size(); ++i) {
        const double bound = std::ldexp(1.0, -22) * (1.0 + pos_of[i / cols * 2 + (i % cols) / (cols / 2)]);
        worst = std::max(worst, std::abs(double(ours.data()[i]) - stored.data()[i]) / bound);
    }
    return worst;
}

}  // namespace

TEMPLATE_TEST_CASE("abstractor reproduces every official abstractor activation of the tiny cases",
                   "[abstractor][parity]", float, double) {
    using T = TestType;
    const ModelConfig cfg = load_config(kTiny + "/config.json");
    SafetensorsFile weights(kTiny + "/model.safetensors");
    WeightLoader w(weights);
    VisualAbstractorModel<T> abstractor;
    abstractor.load(w, cfg.abstractor, std::size_t(cfg.text.hidden_size), cfg.vision);

    std::size_t cases = 0;
    for (const auto& c : parity::tiny_cases()) {
        const std::size_t n_images = c["images"].size();
        if (n_images == 0) continue;
        const std::string case_name = c["name"];
        SECTION(case_name) {
            parity::Case ref(case_name);
            Hooks<T> hooks;
            Recorder<T> rec(hooks);
            const Matrix<T> out = abstractor.forward(ref_matrix<T>(ref, "model.vision_model"), n_images, hooks);
            REQUIRE(out.shape(0) == n_images * (cfg.abstractor.num_learnable_queries + 1));
            check_all(ref, rec, activation_names(c), kAbstractor, parity::tolerance<T>());
            ref.check(kAbstractor, out, parity::tolerance<T>());
        }
        ++cases;
    }
    CHECK(cases == 4);
}

TEMPLATE_TEST_CASE("vision encoder then abstractor reproduce the official visual tokens", "[abstractor][parity]",
                   float, double) {
    using T = TestType;
    const ModelConfig cfg = load_config(kTiny + "/config.json");
    SafetensorsFile weights(kTiny + "/model.safetensors");
    WeightLoader w(weights);
    VisionModel<T> vision;
    vision.load(w, cfg.vision);
    VisualAbstractorModel<T> abstractor;
    abstractor.load(w, cfg.abstractor, std::size_t(cfg.text.hidden_size), cfg.vision);

    parity::Case ref("two_images");
    const auto pixels = ref.pixel_values<T>(2);
    Hooks<T> hooks;
    Recorder<T> rec(hooks);
    abstractor.forward(vision.forward(pixels, hooks), 2, hooks);
    check_all(ref, rec, activation_names(parity::tiny_case("two_images")), "model.vis", parity::tolerance<T>());
    // every vision and abstractor weight was read, nothing else
    for (const auto& n : w.unused())
        CHECK_FALSE((starts_with(n, "model.vision_model") || starts_with(n, kAbstractor)));
}

TEST_CASE("rebuilt sin-cos tables equal the stored ones to float32 rounding", "[abstractor][sincos]") {
    const ModelConfig cfg = load_config(kTiny + "/config.json");
    SafetensorsFile weights(kTiny + "/model.safetensors");
    const auto D = std::size_t(cfg.abstractor.hidden_size), Q = std::size_t(cfg.abstractor.num_learnable_queries);
    const auto g = std::size_t(cfg.abstractor.grid_size);

    // query table: row i encodes position i in both halves
    const Matrix<float> q = get_1d_sincos_pos_embed(D, Q);
    const auto q_stored = read_tensor<double>(weights, kTables + "q_pos_embed");
    REQUIRE(q.size() == q_stored.size());
    std::vector<double> q_pos;
    for (std::size_t i = 0; i < Q; ++i) q_pos.insert(q_pos.end(), {double(i), double(i)});
    CHECK(table_excess(q, q_stored, q_pos) <= 1.0);

    // patch table: zero CLS row, then the first half encodes the column, the second the row
    const Matrix<float> k = get_2d_sincos_pos_embed(D, g, true);
    const auto k_stored = read_tensor<double>(weights, kTables + "k_pos_embed");
    REQUIRE(k.size() == k_stored.size());
    std::vector<double> k_pos = {0, 0};
    for (std::size_t i = 0; i < g * g; ++i) k_pos.insert(k_pos.end(), {double(i % g), double(i / g)});
    CHECK(table_excess(k, k_stored, k_pos) <= 1.0);
    for (std::size_t d = 0; d < D; ++d) CHECK(k(0, d) == 0.0f);

    // spot values from the formula: sin(p·ω_k), ω_k = 10000^(−k/(E/2))
    CHECK(std::abs(q(5, 3) - std::sin(5.0 * std::pow(10000.0, -3.0 / 32))) < 1e-6);
    CHECK(std::abs(q(5, 32 + 3) - std::cos(5.0 * std::pow(10000.0, -3.0 / 32))) < 1e-6);
    // k row 1 + (y=2)·4 + (x=3): column 3 in the first half, row 2 in the second (E/2 = 32, ω over 16)
    CHECK(std::abs(k(1 + 2 * 4 + 3, 1) - std::sin(3.0 * std::pow(10000.0, -1.0 / 16))) < 1e-6);
    CHECK(std::abs(k(1 + 2 * 4 + 3, 32 + 1) - std::sin(2.0 * std::pow(10000.0, -1.0 / 16))) < 1e-6);
    CHECK(std::abs(k(1 + 2 * 4 + 3, 32 + 16 + 1) - std::cos(2.0 * std::pow(10000.0, -1.0 / 16))) < 1e-6);

    // without use_cls_token there is no zero row
    CHECK(get_2d_sincos_pos_embed(D, g, false).shape(0) == g * g);
    CHECK_THROWS_AS(get_2d_sincos_pos_embed(30, 2, true), Error);
}

TEMPLATE_TEST_CASE("abstractor without stored sin-cos tables rebuilds them", "[abstractor][sincos]", float, double) {
    using T = TestType;
    const ModelConfig cfg = load_config(kTiny + "/config.json");
    SafetensorsFile weights(kTiny + "/model.safetensors");
    WithoutTensors stripped(weights, is_pos_table);
    WeightLoader w(stripped);
    VisualAbstractorModel<T> abstractor;
    abstractor.load(w, cfg.abstractor, std::size_t(cfg.text.hidden_size), cfg.vision);
    const auto& att = abstractor.encoder.layers[1].crossattention.attention;
    CHECK(att.q_pos_embed == xt::cast<T>(get_1d_sincos_pos_embed(64, 8)));
    CHECK(att.k_pos_embed == xt::cast<T>(get_2d_sincos_pos_embed(64, 4, true)));

    // The rebuilt tables differ from numpy's by float32 rounding, far below
    // the float tolerance: the float run must still match the reference.
    if (sizeof(T) == 4) {
        parity::Case ref("image_then_text");
        Hooks<T> hooks;
        Recorder<T> rec(hooks);
        abstractor.forward(ref_matrix<T>(ref, "model.vision_model"), 1, hooks);
        check_all(ref, rec, activation_names(parity::tiny_case("image_then_text")), kAbstractor,
                  parity::tolerance<T>());
    }
}

TEMPLATE_TEST_CASE("abstractor reproduces the official code on other configurations", "[abstractor][parity][variants]",
                   float, double) {
    using T = TestType;
    for (const std::string variant : {"gelu_nopost_heads", "nocls_grid5", "leftover_pixels"}) {
        SECTION(variant) {
            const std::string dir = kFixtures + "/vision_variants/" + variant;
            const ModelConfig cfg = load_config(dir + "/config.json");
            SafetensorsFile weights(dir + "/model.safetensors");
            WeightLoader w(weights);
            VisualAbstractorModel<T> abstractor;
            abstractor.load(w, cfg.abstractor, std::size_t(cfg.text.hidden_size), cfg.vision);
            parity::Case ref("activations", dir);
            const std::size_t n_images = ref.shape("pixel_values")[0];
            Hooks<T> hooks;
            Recorder<T> rec(hooks);
            abstractor.forward(ref_matrix<T>(ref, "model.vision_model"), n_images, hooks);
            check_all(ref, rec, ref.names(), kAbstractor, parity::tolerance<T>());
        }
    }
}

TEST_CASE("abstractor errors name what is wrong", "[abstractor][errors]") {
    const ModelConfig cfg = load_config(kTiny + "/config.json");
    SafetensorsFile weights(kTiny + "/model.safetensors");
    const auto H = std::size_t(cfg.text.hidden_size);
    {
        // the stored k_pos_embed is for grid 4 with CLS: 17 rows
        AbstractorConfig a = cfg.abstractor;
        a.grid_size = 5;
        WeightLoader w(weights);
        VisualAbstractorModel<double> m;
        CHECK_THROWS_WITH(m.load(w, a, H, cfg.vision), Catch::Contains("k_pos_embed") && Catch::Contains("[26, 64]"));
    }
    {
        // rebuilt tables for grid 5 do not fit the vision encoder's 17 positions
        AbstractorConfig a = cfg.abstractor;
        a.grid_size = 5;
        WithoutTensors stripped(weights, is_pos_table);
        WeightLoader w(stripped);
        VisualAbstractorModel<double> m;
        CHECK_THROWS_WITH(m.load(w, a, H, cfg.vision),
                          Catch::Contains("covers 26 vision positions") && Catch::Contains("yields 17"));
    }
    {
        AbstractorConfig a = cfg.abstractor;
        a.hidden_size = 32;
        WeightLoader w(weights);
        VisualAbstractorModel<double> m;
        CHECK_THROWS_WITH(m.load(w, a, H, cfg.vision), Catch::Contains("must equal encoder_hidden_size"));
    }
    {
        AbstractorConfig a = cfg.abstractor;
        a.encoder_hidden_size = 32;
        a.hidden_size = 32;
        WeightLoader w(weights);
        VisualAbstractorModel<double> m;
        CHECK_THROWS_WITH(m.load(w, a, H, cfg.vision), Catch::Contains("must equal the vision hidden_size 64"));
    }
    WeightLoader w(weights);
    VisualAbstractorModel<double> m;
    m.load(w, cfg.abstractor, H, cfg.vision);
    CHECK_THROWS_WITH(m.forward(Matrix<double>::from_shape({16, 64}), 1, Hooks<double>()),
                      Catch::Contains("image_features") && Catch::Contains("[17, 64]"));
    CHECK_THROWS_WITH(m.forward(Matrix<double>::from_shape({17, 32}), 1, Hooks<double>()),
                      Catch::Contains("[17, 64]"));
}
