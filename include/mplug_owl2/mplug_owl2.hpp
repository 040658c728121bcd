// The library's public API in one include: load a checkpoint, turn image
// files into pixel values, tokenise a chat prompt, run or generate, observe
// or change any activation through hooks, record them, and route the
// modality-adaptive module. The README's "Using the library" section uses
// only this header.
#pragma once

// errors, hooks and the activation recorder
#include "core/error.hpp"
#include "core/hooks.hpp"
#include "core/recorder.hpp"

// files: config.json, checkpoints, safetensors, images, the tokenizer and the chat template
#include "io/checkpoint.hpp"
#include "io/config.hpp"
#include "io/conversation.hpp"
#include "io/image.hpp"
#include "io/image_token.hpp"
#include "io/safetensors.hpp"
#include "io/tokenizer.hpp"

// the modality-adaptive module's routing (MamRouting)
#include "language/multiway.hpp"

// the whole model: preprocessing, loading, generation
#include "model/generation.hpp"
#include "model/image_processor.hpp"
#include "model/load_model.hpp"
#include "model/mplug_owl2_model.hpp"
#include "model/sampling.hpp"
