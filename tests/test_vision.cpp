// The vision encoder (`model.vision_model`): fed the reference's pixel values,
// it must reproduce every vision activation the official code recorded, in
// the official layout, for one and for two images; then configurations the
// reference set does not cover (tests/fixtures/vision_variants, written by
// the official classes, see make_vision_variants.py), torch's float32
// bicubic resize of the CLS-less position table (tests/fixtures/bicubic),
// hooks that change activations, and the errors.
#include <catch2/catch.hpp>

#include <cmath>

#include "mplug_owl2/core/recorder.hpp"
#include "mplug_owl2/io/config.hpp"
#include "mplug_owl2/io/safetensors.hpp"
#include "mplug_owl2/vision/vision_model.hpp"
#include "parity.hpp"

using namespace mplug_owl2;

namespace {

const std::string kTiny = parity::tiny_dir();
const std::string kFixtures = MPLUG_OWL2_FIXTURE_DIR;
const std::string kVision = "model.vision_model";

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

// The reference's image.N.pixel_values [3, S, S] stacked   [N, 3, S, S]
template <class T>
xt::xtensor<T, 4> case_pixels(const parity::Case& ref, std::size_t n_images) {
    xt::xtensor<T, 4> px;
    for (std::size_t n = 0; n < n_images; ++n) {
        const auto one = ref.get("image." + std::to_string(n) + ".pixel_values");
        if (n == 0) px = xt::xtensor<T, 4>::from_shape({n_images, one.shape(0), one.shape(1), one.shape(2)});
        std::copy(one.begin(), one.end(), px.begin() + n * one.size());
    }
    return px;
}

// Every reference tensor whose name starts with `prefix` must have been
// recorded with the same shape and agree within the parity tolerance.
template <class T>
void check_all(const parity::Case& ref, const Recorder<T>& rec, const std::vector<std::string>& names,
               const std::string& prefix) {
    std::size_t checked = 0;
    for (const auto& name : names) {
        if (!starts_with(name, prefix)) continue;
        INFO("activation " << name);
        REQUIRE(rec.contains(name));
        CHECK(rec.at(name).shape == ref.shape(name));
        ref.check(name, rec.at(name).values, parity::tolerance<T>());
        ++checked;
    }
    CHECK(checked > 0);
}

std::vector<std::string> activation_names(const nlohmann::json& c) {
    std::vector<std::string> out;
    for (const auto& a : c["activations"]) out.push_back(a.get<std::string>());
    return out;
}

}  // namespace

TEMPLATE_TEST_CASE("vision encoder reproduces every official vision activation of the tiny cases", "[vision][parity]",
                   float, double) {
    using T = TestType;
    const ModelConfig cfg = load_config(kTiny + "/config.json");
    SafetensorsFile weights(kTiny + "/model.safetensors");
    WeightLoader w(weights);
    VisionModel<T> vision;
    vision.load(w, cfg.vision);

    std::size_t cases = 0;
    for (const auto& c : parity::tiny_cases()) {
        const std::size_t n_images = c["images"].size();
        if (n_images == 0) continue;
        const std::string case_name = c["name"];
        SECTION(case_name) {
            parity::Case ref(case_name);
            Hooks<T> hooks;
            Recorder<T> rec(hooks);
            const Matrix<T> out = vision.forward(case_pixels<T>(ref, n_images), hooks);
            REQUIRE(out.shape(0) == n_images * std::size_t(cfg.vision.seq_len()));
            REQUIRE(out.shape(1) == std::size_t(cfg.vision.hidden_size));
            check_all(ref, rec, activation_names(c), kVision);
            ref.check(kVision, out, parity::tolerance<T>());  // the returned rows too
        }
        ++cases;
    }
    CHECK(cases == 4);
}

TEST_CASE("vision encoder reports the official modules beyond the reference set", "[vision]") {
    // The reference leaves out modules the official forward calls more than
    // once (post_layernorm: sequence and pooled CLS row) or that are shared
    // between layers (the activation instance); they are reported here too,
    // and their values follow from the recorded neighbours.
    const ModelConfig cfg = load_config(kTiny + "/config.json");
    SafetensorsFile weights(kTiny + "/model.safetensors");
    WeightLoader w(weights);
    VisionModel<double> vision;
    vision.load(w, cfg.vision);
    parity::Case ref("image_then_text");
    Hooks<double> hooks;
    Recorder<double> rec(hooks);
    vision.forward(case_pixels<double>(ref, 1), hooks);

    ref.check(kVision, rec.at(kVision + ".post_layernorm").values, 1e-9);  // post_layernorm is the model's output
    const auto& fc1 = ref.get(kVision + ".encoder.layers.1.mlp.fc1");
    std::vector<double> quick_gelu;
    for (double x : fc1) quick_gelu.push_back(x / (1.0 + std::exp(-1.702 * x)));
    const auto& act = rec.at(kVision + ".encoder.layers.1.mlp.activation_fn");
    CHECK(act.shape == ref.shape(kVision + ".encoder.layers.1.mlp.fc1"));
    CHECK(parity::relative_error(act.values, quick_gelu) <= 1e-9);
}

TEST_CASE("two images at once equal each image alone", "[vision]") {
    const ModelConfig cfg = load_config(kTiny + "/config.json");
    SafetensorsFile weights(kTiny + "/model.safetensors");
    WeightLoader w(weights);
    VisionModel<double> vision;
    vision.load(w, cfg.vision);
    parity::Case ref("two_images");
    const auto both = case_pixels<double>(ref, 2);
    const Matrix<double> joint = vision.forward(both, Hooks<double>());
    const std::size_t L = std::size_t(cfg.vision.seq_len());
    for (std::size_t n = 0; n < 2; ++n) {
        xt::xtensor<double, 4> one = xt::view(both, xt::range(n, n + 1), xt::all(), xt::all(), xt::all());
        const Matrix<double> alone = vision.forward(one, Hooks<double>());
        const Matrix<double> rows = xt::view(joint, xt::range(n * L, (n + 1) * L), xt::all());
        CHECK(parity::relative_error(alone, rows) <= 1e-12);
    }
}

TEST_CASE("a hook that replaces patch_embed changes what follows", "[vision][hooks]") {
    // patch_embed is reported as a transposed copy in the conv's layout; the
    // hook's change must reach the embeddings. With the patch projections
    // zeroed, each patch row of the embeddings is pre_layernorm of its
    // position embedding alone.
    const ModelConfig cfg = load_config(kTiny + "/config.json");
    SafetensorsFile weights(kTiny + "/model.safetensors");
    WeightLoader w(weights);
    VisionModel<double> vision;
    vision.load(w, cfg.vision);
    parity::Case ref("image_then_text");
    Hooks<double> hooks;
    std::size_t seen = 0;
    hooks.add([&](const std::string& name, Matrix<double>& value, const Shape& shape) {
        if (name != kVision + ".embeddings.patch_embed") return;
        ++seen;
        CHECK(shape == ref.shape(name));
        CHECK(parity::relative_error(value, ref.get(name)) <= 1e-9);  // the official [D, g, g] layout
        value.fill(0.0);
    });
    Recorder<double> rec(hooks);
    vision.forward(case_pixels<double>(ref, 1), hooks);
    REQUIRE(seen == 1);

    const Matrix<double> expect = vision.embeddings.pre_layernorm.forward(
        xt::view(vision.embeddings.position_embedding, xt::range(1, cfg.vision.seq_len()), xt::all()),
        Hooks<double>());
    const auto& got = rec.at(kVision + ".embeddings");
    std::vector<double> patch_rows(got.values.begin() + cfg.vision.hidden_size, got.values.end());
    CHECK(parity::relative_error(patch_rows, expect) <= 1e-12);
}

TEST_CASE("bicubic resize matches torch's float32 kernel bit for bit", "[vision][bicubic]") {
    // F.interpolate(bicubic, align_corners=False) on float32, values written
    // by tests/fixtures/make_bicubic.py; the 16×16 source is the CLS-less
    // position table's grid.
    SafetensorsFile f(kFixtures + "/bicubic/bicubic.safetensors");
    std::size_t checked = 0;
    for (const auto& name : f.names()) {
        if (!starts_with(name, "out.")) continue;
        // out.<in>.<out>
        const auto dot = name.find('.', 4);
        const std::size_t in = std::stoul(name.substr(4, dot - 4)), out = std::stoul(name.substr(dot + 1));
        INFO("resize " << in << " -> " << out);
        const auto src = read_tensor<float>(f, "src." + std::to_string(in));
        const auto expect = read_tensor<float>(f, name);
        Matrix<float> s = Matrix<float>::from_shape({src.shape(0), src.shape(1)});
        std::copy(src.begin(), src.end(), s.begin());
        const Matrix<float> got = upsample_bicubic2d(s, in, out);
        REQUIRE(got.size() == expect.size());
        std::size_t differ = 0;
        for (std::size_t i = 0; i < got.size(); ++i) differ += got.data()[i] != expect.data()[i];
        CHECK(differ == 0);
        ++checked;
    }
    CHECK(checked >= 10);
}

TEST_CASE("get_abs_pos keeps a table of the right size unchanged", "[vision][bicubic]") {
    Matrix<double> table = Matrix<double>::from_shape({256, 3});
    for (std::size_t i = 0; i < table.size(); ++i) table.data()[i] = std::sin(0.1 * double(i)) + 1e-12 * double(i);
    const Matrix<double> same = get_abs_pos(table, 256);
    CHECK(same == table);  // no float32 round trip when no resize happens
    const Matrix<double> resized = get_abs_pos(table, 25);
    CHECK(resized.shape(0) == 25);
    CHECK(resized.shape(1) == 3);
    CHECK_THROWS_AS(get_abs_pos(Matrix<double>::from_shape({250, 3}), 25), Error);
}

TEMPLATE_TEST_CASE("vision encoder reproduces the official code on other configurations", "[vision][parity][variants]",
                   float, double) {
    using T = TestType;
    for (const std::string variant : {"gelu_nopost_heads", "nocls_grid5", "leftover_pixels"}) {
        SECTION(variant) {
            const std::string dir = kFixtures + "/vision_variants/" + variant;
            const ModelConfig cfg = load_config(dir + "/config.json");
            SafetensorsFile weights(dir + "/model.safetensors");
            WeightLoader w(weights);
            VisionModel<T> vision;
            vision.load(w, cfg.vision);
            parity::Case ref("activations", dir);
            const auto px = ref.get("pixel_values");
            xt::xtensor<T, 4> pixels = xt::xtensor<T, 4>::from_shape({px.shape(0), px.shape(1), px.shape(2), px.shape(3)});
            std::copy(px.begin(), px.end(), pixels.begin());
            Hooks<T> hooks;
            Recorder<T> rec(hooks);
            vision.forward(pixels, hooks);
            check_all(ref, rec, ref.names(), kVision);
        }
    }
}

TEST_CASE("vision encoder errors name what is wrong", "[vision][errors]") {
    const ModelConfig cfg = load_config(kTiny + "/config.json");
    SafetensorsFile weights(kTiny + "/model.safetensors");
    {
        // a config whose patch grid does not fit the stored position table
        VisionConfig c = cfg.vision;
        c.image_size = 70;
        WeightLoader w(weights);
        VisionModel<double> vision;
        CHECK_THROWS_WITH(vision.load(w, c), Catch::Contains("position_embedding") && Catch::Contains("[26, 64]"));
    }
    WeightLoader w(weights);
    VisionModel<double> vision;
    vision.load(w, cfg.vision);
    // larger images than the table covers
    CHECK_THROWS_WITH(vision.forward(xt::xtensor<double, 4>::from_shape({1, 3, 70, 70}), Hooks<double>()),
                      Catch::Contains("26 positions") && Catch::Contains("17 rows"));
    CHECK_THROWS_WITH(vision.forward(xt::xtensor<double, 4>::from_shape({1, 4, 56, 56}), Hooks<double>()),
                      Catch::Contains("3 colour channels"));
    CHECK_THROWS_WITH(vision.forward(xt::xtensor<double, 4>::from_shape({1, 3, 10, 56}), Hooks<double>()),
                      Catch::Contains("smaller than one 14x14 patch"));
}
