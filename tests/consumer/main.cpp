// Reads a config and a weight through the installed headers, and runs one
// Linear layer: enough to prove includes, BLAS and JSON are wired up.
#include <iostream>

#include "mplug_owl2/core/linear.hpp"
#include "mplug_owl2/io/config.hpp"
#include "mplug_owl2/io/safetensors.hpp"

int main(int argc, char** argv) {
    using namespace mplug_owl2;
    if (argc != 2) {
        std::cerr << "usage: consumer MODEL_DIR\n";
        return 2;
    }
    const std::string dir = argv[1];
    const ModelConfig cfg = load_config(dir + "/config.json");
    SafetensorsFile file(dir + "/model.safetensors");
    WeightLoader w(file);
    Linear<float> q;
    const auto H = static_cast<std::size_t>(cfg.text.hidden_size);
    q.load(w, "model.layers.0.self_attn.q_proj", H, H, false);
    Matrix<float> x = xt::ones<float>({std::size_t(1), H});
    Hooks<float> hooks;
    const Matrix<float> y = q.forward(x, hooks);
    std::cout << "ok " << y.shape(0) << "x" << y.shape(1) << "\n";
    return y.shape(1) == H ? 0 : 1;
}
