// libFuzzer target: arbitrary bytes as a qwen.tiktoken file either load or
// are refused with mplug_owl2::Error; a file that loads encodes a fixed text
// and its own bytes (when they are UTF-8) into ids that are special or ranks
// of the file, and those ids decode.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#include "mplug_owl2/io/qwen_tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const std::string path = "/tmp/fuzz_qwen_tiktoken." + std::to_string(::getpid()) + ".tiktoken";
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(data), std::streamsize(size));
    try {
        const mplug_owl2::QwenTokenizer tok(path);
        for (const std::string& text : {std::string("USER: <|image|>What is this? 杭州<|im_end|>\n"),
                                        std::string(reinterpret_cast<const char*>(data), size)}) {
            try {
                const auto ids = tok.encode_prompt(text);
                std::vector<std::int64_t> text_ids;
                for (std::int64_t id : ids) {
                    if (id == mplug_owl2::kImageTokenIndex) continue;
                    if (!tok.is_special(id)) (void)tok.piece(id);  // throws (and so aborts below) if not a rank
                    text_ids.push_back(id);
                }
                (void)tok.decode(text_ids, false);
            } catch (const mplug_owl2::Error& e) {
                // Only texts that are not UTF-8 and bytes the file has no token for may be refused.
                const std::string m = e.what();
                if (m.find("not valid UTF-8") == std::string::npos && m.find("has no token for byte") == std::string::npos)
                    std::abort();
            }
        }
    } catch (const mplug_owl2::Error&) {
    }
    return 0;
}
