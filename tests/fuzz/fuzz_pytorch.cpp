// libFuzzer target: arbitrary bytes as a PyTorch checkpoint (zip container +
// pickled state dict) open or throw mplug_owl2::Error; every tensor an opened
// file offers is read.
#include <cstdint>
#include <cstdio>
#include <string>
#include <unistd.h>

#include "mplug_owl2/io/pytorch_checkpoint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const std::string path = "/tmp/fuzz_pytorch." + std::to_string(getpid());
    if (FILE* f = std::fopen(path.c_str(), "wb")) {
        if (size) std::fwrite(data, 1, size, f);
        std::fclose(f);
    }
    try {
        mplug_owl2::PyTorchCheckpoint ckpt(path);
        for (const auto& name : ckpt.names()) {
            const mplug_owl2::TensorInfo* t = ckpt.find(name);
            if (mplug_owl2::shape_numel(t->shape) <= (1u << 20)) (void)mplug_owl2::read_tensor<double>(ckpt, name);
        }
    } catch (const mplug_owl2::Error&) {
    }
    return 0;
}
