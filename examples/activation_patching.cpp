// Activation patching with hooks: which decoder layer carries what the
// image tells the answer?
//
//   run A: the prompt with image A;
//   run B: the same prompt with image B;
//   for each layer k: run B again, with the output of model.layers.k at the
//   image's rows replaced by run A's (a hook on "model.layers.k").
//
// For the prompt's last position it prints, per layer, the patched run's most
// likely next token, KL(A ‖ patched) of the next-token distributions, and
// the share of KL(A ‖ B) the patch removes (1 − KL(A ‖ patched) / KL(A ‖ B)).
// Patching a layer's output at every row would remove all of it; at the
// image rows of the last layer it removes nothing, since the last position
// has already read them.
//
//   activation_patching MODEL_DIR IMAGE_A IMAGE_B [PROMPT_IDS]
//
// PROMPT_IDS: comma-separated ids with −200 for the image (default
// 1,-200,5,17,42,99,7, which fits the tiny model of reference_outputs/); with
// a tokenizer.model in MODEL_DIR the default is the chat template's
// "USER: <|image|>Describe the image. ASSISTANT:".
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "mplug_owl2/mplug_owl2.hpp"

using namespace mplug_owl2;
using T = float;

namespace {

// The next-token logits at the prompt's last position, through `hooks`.
std::vector<double> last_logits(const MplugOwl2LlamaForCausalLM<T>& model, const std::vector<std::int64_t>& ids,
                                const xt::xtensor<T, 4>& pixels, const Hooks<T>& hooks,
                                ModalityIndicators* indicators = nullptr) {
    KVCache<T> cache = model.new_cache();
    const PreparedInputs<T> in = model.prepare_inputs(ids, model.encode_images(pixels, hooks), hooks);
    if (indicators) *indicators = in.modality_indicators;
    const Matrix<T> logits = model.forward(in, cache, hooks);
    const T* last = &logits(logits.shape(0) - 1, 0);
    return std::vector<double>(last, last + logits.shape(1));
}

std::size_t argmax(const std::vector<double>& x) {
    return static_cast<std::size_t>(std::max_element(x.begin(), x.end()) - x.begin());
}

// KL(softmax(p) ‖ softmax(q)).
double kl(const std::vector<double>& p, const std::vector<double>& q) {
    auto log_softmax = [](const std::vector<double>& x) {
        const double m = *std::max_element(x.begin(), x.end());
        double z = 0;
        for (double v : x) z += std::exp(v - m);
        std::vector<double> out;
        for (double v : x) out.push_back(v - m - std::log(z));
        return out;
    };
    const auto lp = log_softmax(p), lq = log_softmax(q);
    double s = 0;
    for (std::size_t j = 0; j < p.size(); ++j) s += std::exp(lp[j]) * (lp[j] - lq[j]);
    return s;
}

std::vector<std::int64_t> prompt_ids(int argc, char** argv, const std::string& model_dir) {
    std::vector<std::int64_t> ids;
    if (argc > 4) {
        std::stringstream in(argv[4]);
        for (std::string item; std::getline(in, item, ',');) ids.push_back(std::stoll(item));
    } else if (std::ifstream(model_dir + "/tokenizer.model").good()) {
        ids = Tokenizer(model_dir).encode_prompt("USER: <|image|>Describe the image. ASSISTANT:");
    } else {
        ids = {1, kImageTokenIndex, 5, 17, 42, 99, 7};
    }
    return ids;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 4) {
        std::cerr << "usage: activation_patching MODEL_DIR IMAGE_A IMAGE_B [PROMPT_IDS]\n";
        return 1;
    }
    try {
        const std::string dir = argv[1];
        const MplugOwl2LlamaForCausalLM<T> model = load_model<T>(dir);
        const std::vector<std::int64_t> ids = prompt_ids(argc, argv, dir);
        const xt::xtensor<T, 4> image_a = process_images<T>({argv[2]}, dir), image_b = process_images<T>({argv[3]}, dir);

        // 1. run A, keeping every layer's output; run B as it is
        std::vector<Matrix<T>> layer_outputs(model.model.layers.size());
        Hooks<T> record;
        record.add([&](const std::string& name, Matrix<T>& x, const Shape&) {
            for (std::size_t k = 0; k < layer_outputs.size(); ++k)
                if (name == model.model.layers[k].name) layer_outputs[k] = x;
        });
        ModalityIndicators indicators;
        const std::vector<double> a = last_logits(model, ids, image_a, record, &indicators);
        const std::vector<double> b = last_logits(model, ids, image_b, Hooks<T>());
        const double kl_ab = kl(a, b);
        std::printf("prompt: %zu positions, %zu of them visual\n", indicators.size(),
                    static_cast<std::size_t>(std::count(indicators.begin(), indicators.end(), 1)));
        std::printf("run A: next token %zu; run B: next token %zu; KL(A||B) %.4g\n", argmax(a), argmax(b), kl_ab);

        // 2. run B with layer k's output at the visual rows taken from run A
        std::printf("%-18s %10s %14s %9s\n", "patched layer", "next token", "KL(A||patched)", "removed");
        for (std::size_t k = 0; k < model.model.layers.size(); ++k) {
            Hooks<T> patch;
            patch.add([&](const std::string& name, Matrix<T>& x, const Shape&) {
                if (name != model.model.layers[k].name) return;
                for (std::size_t r = 0; r < x.shape(0); ++r)
                    if (indicators[r] == 1)
                        std::copy(&layer_outputs[k](r, 0), &layer_outputs[k](r, 0) + x.shape(1), &x(r, 0));
            });
            const std::vector<double> p = last_logits(model, ids, image_b, patch);
            const double kl_ap = kl(a, p);
            std::printf("%-18s %10zu %14.4g %9.3f\n", model.model.layers[k].name.c_str(), argmax(p), kl_ap,
                        kl_ab > 0 ? 1.0 - kl_ap / kl_ab : 0.0);
        }
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 2;
    }
    return 0;
}
