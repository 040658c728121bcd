// libFuzzer target: arbitrary bytes as a safetensors file must open or throw
// mplug_owl2::Error, and every tensor an opened file offers must be readable.
#include <cstdint>
#include <cstdio>
#include <string>
#include <unistd.h>

#include "mplug_owl2/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const std::string path = "/tmp/fuzz_safetensors." + std::to_string(getpid());
    if (FILE* f = std::fopen(path.c_str(), "wb")) {
        if (size) std::fwrite(data, 1, size, f);
        std::fclose(f);
    }
    try {
        mplug_owl2::SafetensorsFile file(path);
        for (const auto& name : file.names()) {
            const mplug_owl2::TensorInfo* t = file.find(name);
            if (mplug_owl2::shape_numel(t->shape) <= (1u << 20)) (void)mplug_owl2::read_tensor<double>(file, name);
        }
    } catch (const mplug_owl2::Error&) {
    }
    return 0;
}
