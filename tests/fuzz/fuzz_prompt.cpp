// libFuzzer target: arbitrary text through the prompt splitter (split at
// <|image|>, tokenise each chunk, one BOS, -200 between chunks) and back
// through the decoder never crashes, and every id is an image marker or a
// vocabulary id.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "mplug_owl2/io/tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const mplug_owl2::Tokenizer tok(std::string(MPLUG_OWL2_FIXTURE_DIR) + "/tokenizer");
    const std::string prompt(reinterpret_cast<const char*>(data), size);
    try {
        const auto ids = tok.encode_prompt(prompt);
        std::vector<std::int64_t> text_ids;
        for (std::int64_t id : ids) {
            if (id == mplug_owl2::kImageTokenIndex) continue;
            if (id < 0 || id >= tok.vocab_size()) std::abort();
            text_ids.push_back(id);
        }
        (void)tok.decode(text_ids);
    } catch (const mplug_owl2::Error&) {
    }
    return 0;
}
