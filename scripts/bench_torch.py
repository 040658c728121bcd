#!/usr/bin/python3
"""Time the official PyTorch code of mPLUG-Owl2 on this machine, at the shapes
of `mplug-owl2 bench`, so that the library's figures can be compared with it.

Usage (Debian's python with Debian's torch 1.13 and numpy):
    /usr/bin/python3 scripts/bench_torch.py /path/to/mPLUG-Owl [--threads 2]
        [--vision-layers 2] [--abstractor-layers 1] [--llm-layers 2]
        [--text 24] [--decode 8] [--repeat 3] [--json] [--tiny] [--check]

/path/to/mPLUG-Owl is a clone of github.com/X-PLUG/mPLUG-Owl (the folder
holding mPLUG-Owl2/), as for tests/fixtures/make_vision_variants.py: the
official files are read from it at commit 0f3068f with `git show` (a bare
mirror works too). A plain copy of the tree without git history is read as it
is on disk.

What runs
---------
Everything is float32 on the CPU under torch.no_grad(), with
torch.set_num_threads(--threads) and the same thread count given to the
OpenBLAS library torch calls for its matrix products. Weights are random
(projections uniform with standard deviation 1/sqrt(fan_in), norm gains
1 ± 0.2, biases ± 0.1: no denormals, no overflow); their values do not change
the time, only their shapes do. Widths are the release's, depths
are chosen:

1. Vision encoder: the official MplugOwlVisionModel (visual_encoder.py),
   hidden 1024, 16 heads, MLP 4096, image 448, patch 14 (1025 positions),
   quick_gelu, layer_norm_eps 1e-6, --vision-layers layers; one image of
   random pixels [1, 3, 448, 448].
2. Abstractor: the official MplugOwlVisualAbstractorModel, hidden 1024,
   16 heads, MLP 2816, 64 queries, encoder_hidden_size 1024,
   --abstractor-layers layers. Its forward ends with visual_fc, the
   projection of the 64 query rows to the decoder's width 4096, and appends
   vit_eos: 65 rows of width 4096. visual_fc is timed as part of this stage.
   Both classes are imported from the official file at run time through
   tests/fixtures/make_vision_variants.py (its import_official, its minimal
   stand-ins for transformers / icecream and its config helpers).
3. Decoder (hidden 4096, 32 heads, MLP 11008, vocabulary 32000,
   --llm-layers layers). The official decoder subclasses transformers' LLaMA
   classes and transformers is not available here, so the decoder is a
   re-derivation with the official code's operations, built this way:
     - from the official files, imported at run time: LlamaDecoderLayer and
       LlamaAttention (modeling_llama2.py), MultiwayNetwork (multiway.py:
       k_proj, v_proj and both RMSNorms in two copies, rows routed by the
       modality indicator, visual rows to copy 1, text rows to copy 0), and
       model_forward (modeling_llama2.py), the LlamaModel.forward that the
       official package installs: position ids, the attention mask, the
       layers, the key/value cache as tuples grown by torch.cat each step;
     - re-derived here as transformers 4.31 computes them: LlamaRMSNorm
       (float32 variance over the last dimension, rsqrt), LlamaMLP
       (down(silu(gate(x)) * up(x))), LlamaRotaryEmbedding (cos/sin cache)
       and apply_rotary_pos_emb (rotate_half), LlamaModel's
       _prepare_decoder_attention_mask (causal mask of finfo.min plus the
       expanded padding mask), the token embedding and lm_head;
     - re-derived from modeling_mplug_owl2.py (which cannot be imported
       without transformers' model registry): the forward of
       MPLUGOwl2LlamaForCausalLM, i.e. the splice of
       prepare_inputs_labels_for_multimodal (the image marker -200 replaced
       by the 65 visual rows, modality indicators 1 there and 0 elsewhere,
       the attention mask widened to the spliced length) and logits =
       lm_head(hidden states) on every position; and a decoding step as
       greedy generation runs it (one token, modality indicator 0, an
       all-ones mask over cache + 1, lm_head, argmax of the last row).
   The prompt is BOS, one image, then --text - 1 random ids: with the 65
   visual rows, 89 positions at --text 24. The prefill is timed as the
   official generation runs it, with lm_head on all positions, and again
   with lm_head on the last position only (a separate figure). Then
   --decode greedy steps, one token at a time through the cache.
4. Whole prefill: vision + abstractor + splice + decoder prefill (lm_head on
   all positions), measured in one go.

Each figure is the best wall-clock time over --repeat runs after one warm-up
run; next to it, the process's CPU-seconds divided by the threads (on a
machine shared with other work, what the stage would take with the cores to
itself). The output is a table and, with --json, one last line of JSON.
Building the models at the default depths takes some 15 to 20 s and 4 GB of memory
(the decoder's embedding and lm_head alone are 1 GB); it is not timed.

--tiny runs the same at the widths of reference_outputs/tiny (a smoke test
of a few milliseconds). --check runs the self-checks instead of timing:
  - the official vision and abstractor classes with the stand-ins reproduce
    every activation of reference_outputs/tiny (make_vision_variants.py's
    validate_on_official, 1e-12 of the RMS);
  - the whole model built here (official vision and abstractor, the decoder
    described above) reproduces, in float64, the prompt logits and every
    greedy decoding step of each official case of reference_outputs/tiny
    (1e-5 of the RMS: the stock RMSNorm and rotary tables compute in
    float32), and the same generated ids;
  - in float32, every decoding step through the key/value cache gives the
    last-row logits of a full forward pass over the whole sequence without
    cache (1e-5 of the RMS).
"""
import argparse
import contextlib
import ctypes
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import types

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "make_vision_variants.py")
TINY = os.path.join(ROOT, "reference_outputs", "tiny")
IMAGE_TOKEN_INDEX = -200
PACKAGE = "official_mplug_owl2_model"  # the official files' package, as imported here

# The decoder of the release (LLaMA-2 7B fields of config.json); the vision
# encoder's and the abstractor's come from the fixture's defaults.
RELEASE_TEXT = dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                    num_attention_heads=32, num_key_value_heads=32, hidden_act="silu", max_position_embeddings=2048,
                    rms_norm_eps=1e-6, rope_theta=10000.0, rope_scaling=None, attention_bias=False, pad_token_id=0,
                    bos_token_id=1, pretraining_tp=1)
DECODER_RUNTIME = dict(output_attentions=False, output_hidden_states=False, use_cache=True, use_return_dict=True)


# ------------------------------------------------------- loading the official files
def load_fixture():
    """tests/fixtures/make_vision_variants.py as a module (its main() does not run)."""
    spec = importlib.util.spec_from_file_location("make_vision_variants", FIXTURE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def in_git(fx, repo, relpath):
    """Whether `repo` is a git repository holding relpath at the official commit."""
    r = subprocess.run(["git", "-C", repo, "cat-file", "-e", fx.OFFICIAL_COMMIT + ":" + relpath],
                       capture_output=True)
    return r.returncode == 0


def official_source(fx, repo, name):
    """The text of mPLUG-Owl2/mplug_owl2/model/<name>: at the official commit if
    repo is a git clone, else as found on disk."""
    relpath = os.path.dirname(fx.OFFICIAL_FILE) + "/" + name
    if in_git(fx, repo, relpath):
        return subprocess.run(["git", "-C", repo, "show", fx.OFFICIAL_COMMIT + ":" + relpath], check=True,
                              capture_output=True).stdout
    path = os.path.join(repo, relpath)
    if not os.path.isfile(path):
        sys.exit("%s: neither a git clone of mPLUG-Owl holding %s at commit %s nor a tree holding %s"
                 % (repo, relpath, fx.OFFICIAL_COMMIT, path))
    print("note: %s is not a git clone; reading %s as it is on disk, unchecked against commit %s"
          % (repo, relpath, fx.OFFICIAL_COMMIT), file=sys.stderr)
    return open(path, "rb").read()


def load_source(module_name, source):
    """Imports `source` as module `module_name` (a dotted name places it in its package)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, module_name.rsplit(".", 1)[-1] + ".py")
        open(path, "wb").write(source)
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return module


def import_vision(fx, repo):
    """The official visual_encoder.py, through the fixture's import_official."""
    if in_git(fx, repo, fx.OFFICIAL_FILE):
        return fx.import_official(repo)
    fx.install_stand_ins()
    return load_source("official_visual_encoder", official_source(fx, repo, os.path.basename(fx.OFFICIAL_FILE)))


# ----------------------------- what the official decoder takes from transformers 4.31
class LlamaRMSNorm(nn.Module):
    def __init__(self, hidden_size, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


def make_llama_mlp(act2fn):
    class LlamaMLP(nn.Module):
        def __init__(self, config):
            super().__init__()
            self.config = config
            self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
            self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
            self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
            self.act_fn = act2fn[config.hidden_act]

        def forward(self, x):
            assert self.config.pretraining_tp == 1
            return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))

    return LlamaMLP


class LlamaRotaryEmbedding(nn.Module):
    def __init__(self, dim, max_position_embeddings=2048, base=10000, device=None):
        super().__init__()
        self.dim, self.max_position_embeddings, self.base = dim, max_position_embeddings, base
        inv_freq = 1.0 / (self.base ** (torch.arange(0, self.dim, 2).float().to(device) / self.dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._set_cos_sin_cache(max_position_embeddings, self.inv_freq.device, torch.get_default_dtype())

    def _set_cos_sin_cache(self, seq_len, device, dtype):
        self.max_seq_len_cached = seq_len
        t = torch.arange(self.max_seq_len_cached, device=device, dtype=self.inv_freq.dtype)
        freqs = torch.einsum("i,j->ij", t, self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos_cached", emb.cos()[None, None, :, :].to(dtype), persistent=False)
        self.register_buffer("sin_cached", emb.sin()[None, None, :, :].to(dtype), persistent=False)

    def forward(self, x, seq_len=None):
        if seq_len > self.max_seq_len_cached:
            self._set_cos_sin_cache(seq_len, x.device, x.dtype)
        return (self.cos_cached[:, :, :seq_len, ...].to(dtype=x.dtype),
                self.sin_cached[:, :, :seq_len, ...].to(dtype=x.dtype))


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin, position_ids):
    cos = cos.squeeze(1).squeeze(0)  # [seq_len, dim]
    sin = sin.squeeze(1).squeeze(0)
    cos = cos[position_ids].unsqueeze(1)  # [bs, 1, seq_len, dim]
    sin = sin[position_ids].unsqueeze(1)
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


def make_causal_mask(input_shape, dtype, device, past_key_values_length=0):
    bsz, tgt_len = input_shape
    # dtype given to torch.full so that the float64 check runs; float32 is unchanged
    mask = torch.full((tgt_len, tgt_len), torch.finfo(dtype).min, dtype=dtype, device=device)
    mask_cond = torch.arange(mask.size(-1), device=device)
    mask.masked_fill_(mask_cond < (mask_cond + 1).view(mask.size(-1), 1), 0)
    mask = mask.to(dtype)
    if past_key_values_length > 0:
        mask = torch.cat([torch.zeros(tgt_len, past_key_values_length, dtype=dtype, device=device), mask], dim=-1)
    return mask[None, None, :, :].expand(bsz, 1, tgt_len, tgt_len + past_key_values_length)


def expand_mask(mask, dtype, tgt_len=None):
    bsz, src_len = mask.size()
    tgt_len = tgt_len if tgt_len is not None else src_len
    expanded = mask[:, None, None, :].expand(bsz, 1, tgt_len, src_len).to(dtype)
    inverted = 1.0 - expanded
    return inverted.masked_fill(inverted.to(torch.bool), torch.finfo(dtype).min)


class LlamaModelBase(nn.Module):
    """transformers' LlamaModel without its forward: the official model_forward
    is attached as forward by import_decoder."""

    def __init__(self, config, layer_class):
        super().__init__()
        self.config = config
        self.padding_idx = config.pad_token_id
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.layers = nn.ModuleList([layer_class(config) for _ in range(config.num_hidden_layers)])
        self.norm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.gradient_checkpointing = False

    def _prepare_decoder_attention_mask(self, attention_mask, input_shape, inputs_embeds, past_key_values_length):
        combined = None
        if input_shape[-1] > 1:
            combined = make_causal_mask(input_shape, inputs_embeds.dtype, inputs_embeds.device,
                                        past_key_values_length)
        if attention_mask is not None:
            expanded = expand_mask(attention_mask, inputs_embeds.dtype, tgt_len=input_shape[-1]).to(
                inputs_embeds.device)
            combined = expanded if combined is None else expanded + combined
        return combined


class Logger:
    def warning_once(self, *args):
        print(*args, file=sys.stderr)

    warning = warning_once


def import_decoder(fx, repo):
    """Official multiway.py and modeling_llama2.py, imported as modules of one
    package, with transformers' LLaMA pieces above in place of
    transformers.models.llama.modeling_llama. Returns (LlamaModel class with the
    official forward, the official modeling_llama2 module)."""
    def module(name, **attrs):
        m = types.ModuleType(name)
        for k, v in attrs.items():
            setattr(m, k, v)
        sys.modules[name] = m
        return m

    def unused_class(*args, **kwargs):
        raise RuntimeError("rope_scaling is not used here")

    logger = Logger()
    module("transformers.models")
    module("transformers.models.llama")
    module("transformers.models.llama.modeling_llama",
           LlamaRMSNorm=LlamaRMSNorm, LlamaMLP=make_llama_mlp(fx.ACT2FN), LlamaRotaryEmbedding=LlamaRotaryEmbedding,
           LlamaLinearScalingRotaryEmbedding=unused_class, LlamaDynamicNTKScalingRotaryEmbedding=unused_class,
           rotate_half=rotate_half, apply_rotary_pos_emb=apply_rotary_pos_emb,
           BaseModelOutputWithPast=fx.ModelOutput, CausalLMOutputWithPast=fx.ModelOutput,
           CrossEntropyLoss=nn.CrossEntropyLoss, logger=logger)
    module("transformers.configuration_utils", PretrainedConfig=object)
    module("transformers.utils", logging=types.SimpleNamespace(get_logger=lambda name: logger))
    package = module(PACKAGE)
    package.__path__ = []
    module(PACKAGE + ".configuration_mplug_owl2", LlamaConfig=types.SimpleNamespace)
    module(PACKAGE + ".modeling_attn_mask_utils", _prepare_4d_causal_attention_mask=fx.unused)
    load_source(PACKAGE + ".multiway", official_source(fx, repo, "multiway.py"))
    llama2 = load_source(PACKAGE + ".modeling_llama2", official_source(fx, repo, "modeling_llama2.py"))
    llama_model = type("LlamaModel", (LlamaModelBase,), {"forward": llama2.model_forward})
    return llama_model, llama2


class CausalLM(nn.Module):
    """MPLUGOwl2LlamaForCausalLM's decoder half: model (LlamaModel with the
    official layers and forward) and lm_head; the splice, the prefill and a
    greedy decoding step as the official forward and generation run them."""

    def __init__(self, config, llama_model, llama2):
        super().__init__()
        self.model = llama_model(config, llama2.LlamaDecoderLayer)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    def splice(self, input_ids, image_features):
        """prepare_inputs_labels_for_multimodal for one prompt [1, n]: every -200
        replaced by the next image's rows; (embeds [1, L, D], indicators [1, L])."""
        embed = self.model.embed_tokens
        ids, pieces, routes, image = input_ids[0], [], [], 0
        marks = torch.where(ids == IMAGE_TOKEN_INDEX)[0]
        while marks.numel() > 0:
            start = int(marks[0])
            pieces.append(embed(ids[:start]))
            routes.append(torch.zeros(start, dtype=torch.long))
            pieces.append(image_features[image])
            routes.append(torch.ones(len(image_features[image]), dtype=torch.long))
            image += 1
            ids = ids[start + 1:]
            marks = torch.where(ids == IMAGE_TOKEN_INDEX)[0]
        if ids.numel() > 0:
            pieces.append(embed(ids))
            routes.append(torch.zeros(len(ids), dtype=torch.long))
        return torch.cat(pieces, dim=0)[None], torch.cat(routes, dim=0)[None]

    def prefill(self, input_ids, image_features, last_row_only=False):
        """The prompt through the decoder: (logits [1, rows, V], past_key_values)."""
        if image_features is None:  # a text-only prompt: the ids go to the model, every row routed to 0
            return self.prompt(input_ids, None, torch.zeros_like(input_ids), last_row_only)
        embeds, routes = self.splice(input_ids, image_features)
        return self.prompt(None, embeds, routes, last_row_only)

    def prompt(self, input_ids, embeds, routes, last_row_only=False):
        """A prompt given as ids or as embeddings, with its routes, into an empty
        cache; the mask is all ones (the tokenizer's, widened by the splice)."""
        mask = torch.ones(routes.shape, dtype=torch.long)
        out = self.model(input_ids=input_ids, modality_indicators=routes, attention_mask=mask, past_key_values=None,
                         inputs_embeds=embeds, use_cache=True)
        hidden = out[0]
        return self.lm_head(hidden[:, -1:, :] if last_row_only else hidden), out.past_key_values

    def step(self, token, past):
        """One greedy decoding step: token [1] through the cache; (logits [1, 1, V], cache)."""
        input_ids = token.view(1, 1)
        routes = torch.zeros_like(input_ids).long()
        mask = torch.ones((1, past[-1][-1].shape[-2] + 1), dtype=torch.long)
        out = self.model(input_ids=input_ids, modality_indicators=routes, attention_mask=mask,
                         past_key_values=past, use_cache=True)
        return self.lm_head(out[0]), out.past_key_values

    def full(self, embeds, routes):
        """Logits of every position of a whole sequence, no cache."""
        mask = torch.ones(routes.shape, dtype=torch.long)
        out = self.model(inputs_embeds=embeds, modality_indicators=routes, attention_mask=mask, use_cache=False)
        return self.lm_head(out[0])


def encode_images(vision, abstractor, pixel_values):
    feats = vision(pixel_values).last_hidden_state
    return abstractor(encoder_hidden_states=feats).last_hidden_state


# ---------------------------------------------------------------- weights
@contextlib.contextmanager
def no_default_init():
    """Modules built without their default initialisation (randomize
    overwrites every parameter): saves most of the build time."""
    classes = (nn.Linear, nn.Embedding, nn.Conv2d, nn.LayerNorm)
    saved = [c.reset_parameters for c in classes]
    for c in classes:
        c.reset_parameters = lambda self: None
    try:
        yield
    finally:
        for c, f in zip(classes, saved):
            c.reset_parameters = f


def randomize(module, gen):
    """In place: projections and embeddings uniform with standard deviation
    1/sqrt(fan_in) (uniform draws are several times faster than normal ones),
    norm gains 1 ± 0.2, biases ± 0.1, the other parameters (class token,
    positions, queries, vit_eos) N(0, 0.25)."""
    for name, p in module.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "weight" and p.dim() >= 2:
            a = math.sqrt(3.0 / p[0].numel())
            p.uniform_(-a, a, generator=gen)
        elif leaf == "weight":
            p.uniform_(0.8, 1.2, generator=gen)
        elif leaf == "bias":
            p.uniform_(-0.1, 0.1, generator=gen)
        else:
            p.normal_(0.0, 0.5, generator=gen)


# ---------------------------------------------------------------- BLAS threads
def openblas():
    """The OpenBLAS library torch has loaded, or None."""
    for line in open("/proc/self/maps"):
        path = line.split()[-1]
        if "openblas" in os.path.basename(path) and ".so" in path:
            return ctypes.CDLL(path)
    return None


def set_threads(n):
    """torch's threads and OpenBLAS's (torch.set_num_threads does not reach
    OpenBLAS's own thread pool); a description of both."""
    torch.set_num_threads(n)
    lib = openblas()
    if lib is None:
        return "BLAS: not OpenBLAS"
    lib.openblas_set_num_threads(n)
    lib.openblas_get_config.restype = ctypes.c_char_p
    lib.openblas_get_corename.restype = ctypes.c_char_p
    return "%s (core %s), %d threads" % (lib.openblas_get_config().decode(),
                                                  lib.openblas_get_corename().decode(),
                                                  lib.openblas_get_num_threads())


def parallel_summary():
    info = {}
    for line in torch.__config__.parallel_info().splitlines():
        line = line.strip()
        if " : " in line:
            k, v = line.split(" : ", 1)
            info[k.strip()] = v.strip()
        elif line.startswith("ATen parallel backend:"):
            info["backend"] = line.split(":", 1)[1].strip()
    return info


# ---------------------------------------------------------------- configs
def configs(fx, args):
    """(vision, abstractor, text) configs at the release's (or the tiny
    reference's) widths and the chosen depths."""
    vision, abstractor, text = {}, {}, dict(RELEASE_TEXT)
    if args.tiny:
        tiny = json.load(open(os.path.join(TINY, "config.json")))
        vision.update(tiny["visual_config"]["visual_model"])
        abstractor.update(tiny["visual_config"]["visual_abstractor"])
        text.update({k: v for k, v in tiny.items() if k in RELEASE_TEXT})
    vision["num_hidden_layers"] = args.vision_layers
    abstractor["num_hidden_layers"] = args.abstractor_layers
    text["num_hidden_layers"] = args.llm_layers
    text.update(DECODER_RUNTIME)
    return (fx.config(fx.VISION_DEFAULTS, vision), fx.config(fx.ABSTRACTOR_DEFAULTS, abstractor),
            types.SimpleNamespace(**text))


def text_config(cfg_json):
    c = {k: cfg_json.get(k, v) for k, v in RELEASE_TEXT.items()}
    c.update(DECODER_RUNTIME)
    return types.SimpleNamespace(**c)


# ---------------------------------------------------------------- checks
def tiny_reference_model(fx, official, llama_model, llama2):
    """reference_outputs/tiny in float64: (vision, abstractor, decoder)."""
    cfg_json = json.load(open(os.path.join(TINY, "config.json")))
    vision, abstractor = fx.build(official, cfg_json)
    lm = CausalLM(text_config(cfg_json), llama_model, llama2).double().eval()
    weights = fx.read_safetensors(os.path.join(TINY, "model.safetensors"))
    parts = ((fx.VISION, vision), (fx.ABSTRACTOR, abstractor))
    for prefix, root in parts:
        root.load_state_dict({k[len(prefix) + 1:]: t.double() for k, t in weights.items()
                              if k.startswith(prefix + ".")}, strict=True)
    lm.load_state_dict({k: t.double() for k, t in weights.items()
                        if not any(k.startswith(p + ".") for p, _ in parts)}, strict=True)
    return vision, abstractor, lm


def run_checks(fx, official, llama_model, llama2):
    fx.validate_on_official(official)
    vision, abstractor, lm = tiny_reference_model(fx, official, llama_model, llama2)
    cases = [c for c in json.load(open(os.path.join(TINY, "cases.json")))["cases"] if not c.get("ablate")]
    worst, checked, failures = 0.0, 0, []

    def compare(what, ours, ref, tolerance):
        nonlocal worst, checked
        assert ours.shape == ref.shape, (what, ours.shape, ref.shape)
        e = fx.rel(ours, ref)
        worst, checked = max(worst, e), checked + 1
        if not e <= tolerance:
            failures.append("%s: relative error %.3g" % (what, e))

    prompts = {}
    with torch.no_grad():
        # 1. the official float64 reference: prompt logits, every step, the ids
        for case in cases:
            ref = fx.read_safetensors(os.path.join(TINY, case["name"] + ".safetensors"))
            ids = torch.tensor([case["input_ids"]], dtype=torch.long)
            feats = None
            if case["images"]:
                pixels = torch.stack([ref["image.%d.pixel_values" % i] for i in range(len(case["images"]))])
                feats = encode_images(vision, abstractor, pixels.double())
                embeds, routes = lm.splice(ids, feats)
                if "decoder.inputs_embeds" in ref:
                    compare(case["name"] + " inputs_embeds", embeds[0], ref["decoder.inputs_embeds"], 1e-12)
                if not torch.equal(routes[0], ref["decoder.modality_indicators"]):
                    failures.append(case["name"] + ": modality indicators differ")
                prompts[case["name"]] = (embeds, routes)
            logits, past = lm.prefill(ids, feats)
            compare(case["name"] + " logits", logits[0], ref["logits"], 1e-5)
            token, generated = logits[0, -1].argmax(-1), []
            for i in range(len(case["generated_ids"])):
                generated.append(int(token))
                step_logits, past = lm.step(token.view(1), past)
                compare("%s step %d" % (case["name"], i), step_logits[0, -1], ref["generate.step_logits"][i], 1e-5)
                token = step_logits[0, -1].argmax(-1)
            if generated != case["generated_ids"]:
                failures.append("%s: generated %s, official %s" % (case["name"], generated, case["generated_ids"]))
        print("decoder built here on the tiny reference: %d cases, %d tensors, worst relative error %.3g"
              % (len(cases), checked, worst))

        # 2. float32: each step through the cache = the last row of a full pass
        lm32 = lm.float()
        worst32 = 0.0
        for name, (embeds, routes) in prompts.items():
            embeds = embeds.float()
            logits, past = lm32.prompt(None, embeds, routes)
            token = logits[0, -1].argmax(-1)
            for i in range(8):
                step_logits, past = lm32.step(token.view(1), past)
                embeds = torch.cat([embeds, lm32.model.embed_tokens(token.view(1, 1))], dim=1)
                routes = torch.cat([routes, torch.zeros(1, 1, dtype=torch.long)], dim=1)
                full = lm32.full(embeds, routes)
                e = fx.rel(step_logits[0, -1], full[0, -1])
                worst32 = max(worst32, e)
                if not e <= 1e-5:
                    failures.append("%s: float32 step %d through the cache differs from a full pass by %.3g"
                                    % (name, i, e))
                token = step_logits[0, -1].argmax(-1)
        print("float32 key/value cache against full passes: %d prompts x 8 steps, worst relative error %.3g"
              % (len(prompts), worst32))
    if failures:
        sys.exit("CHECK FAILED:\n  " + "\n  ".join(failures))
    print("all checks passed")


# ---------------------------------------------------------------- timing
class Best:
    """The least wall-clock seconds and CPU-seconds over the runs."""

    def __init__(self):
        self.wall, self.cpu = math.inf, math.inf

    def take(self, a, b, per=1):
        self.wall = min(self.wall, (b[0] - a[0]) / per)
        self.cpu = min(self.cpu, (b[1] - a[1]) / per)


def stamp():
    return time.perf_counter(), time.process_time()


def run_bench(args, fx, official, llama_model, llama2, provenance):
    blas = set_threads(args.threads)
    vcfg, acfg, tcfg = configs(fx, args)
    image_rows = acfg.num_learnable_queries + 1
    positions = args.text + image_rows
    if positions + args.decode > tcfg.max_position_embeddings:
        sys.exit("--text %d and --decode %d: %d positions exceed max_position_embeddings %d"
                 % (args.text, args.decode, positions + args.decode, tcfg.max_position_embeddings))

    t = time.perf_counter()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad(), no_default_init():
        vision = official.MplugOwlVisionModel(vcfg).eval()
        abstractor = official.MplugOwlVisualAbstractorModel(acfg, tcfg.hidden_size).eval()
        lm = CausalLM(tcfg, llama_model, llama2).eval()
        for m in (vision, abstractor, lm):
            randomize(m, gen)
    pixels = torch.randn((1, 3, vcfg.image_size, vcfg.image_size), generator=gen)
    text = torch.randint(3, tcfg.vocab_size, (args.text - 1,), generator=gen)
    ids = torch.cat([torch.tensor([tcfg.bos_token_id, IMAGE_TOKEN_INDEX]), text])[None]
    print("models built in %.1f s" % (time.perf_counter() - t), file=sys.stderr, flush=True)

    vision_s, abstractor_s, decoder_s, decoder_last_s, total_s, decode_s = (Best() for _ in range(6))
    with torch.no_grad():
        for run in range(args.repeat + 1):
            t0 = stamp()
            feats = vision(pixels).last_hidden_state
            t1 = stamp()
            image_features = abstractor(encoder_hidden_states=feats).last_hidden_state
            t2 = stamp()
            logits, past = lm.prefill(ids, image_features)
            t3 = stamp()
            assert logits.shape[1] == positions, (logits.shape, positions)
            token = logits[:, -1, :].argmax(-1)
            for _ in range(args.decode):
                logits, past = lm.step(token, past)
                token = logits[:, -1, :].argmax(-1)
            t4 = stamp()
            assert past[0][0].shape[2] == positions + args.decode
            del past, logits
            t5 = stamp()
            logits, past = lm.prefill(ids, image_features, last_row_only=True)
            t6 = stamp()
            if run == 0:  # the warm-up; random weights must give finite logits
                assert torch.isfinite(logits).all() and torch.isfinite(image_features).all()
                del past, logits
                continue
            del past, logits
            vision_s.take(t0, t1)
            abstractor_s.take(t1, t2)
            decoder_s.take(t2, t3)
            total_s.take(t0, t3)
            decode_s.take(t3, t4, args.decode)
            decoder_last_s.take(t5, t6)

    widths = "tiny reference widths" if args.tiny else "release widths"
    print("torch %s, %d threads (%s); official code %s; %s"
          % (torch.__version__, torch.get_num_threads(), blas, provenance, widths))
    print("layers: vision %d, abstractor %d, decoder %d; prompt %d positions (%d text); %d decoded; "
          "best of %d runs after a warm-up\n"
          % (args.vision_layers, args.abstractor_layers, args.llm_layers, positions, args.text, args.decode,
             args.repeat))
    rows = [("vision encoder", vision_s), ("abstractor (with visual_fc)", abstractor_s),
            ("decoder prefill, lm_head all rows", decoder_s), ("decoder prefill, lm_head last row", decoder_last_s),
            ("whole prefill", total_s), ("decoding, per token", decode_s)]
    print("%-36s %10s %10s" % ("stage", "seconds", "CPU-s/thr"))
    for name, b in rows:
        print("%-36s %10.4f %10.4f" % (name, b.wall, b.cpu / args.threads))
    if args.json:
        out = dict(source="official mPLUG-Owl2 PyTorch code (%s); the decoder's transformers 4.31 parts and the "
                          "causal-LM wrapper re-derived" % provenance,
                   torch_version=torch.__version__, threads=args.threads, blas=blas, widths=widths,
                   vision_layers=args.vision_layers, abstractor_layers=args.abstractor_layers,
                   llm_layers=args.llm_layers, text_tokens=args.text, prompt_positions=positions,
                   decoded_tokens=args.decode, repeat=args.repeat, parallel_info=parallel_summary())
        keys = ["vision", "abstractor", "prefill_decoder", "prefill_decoder_last_row", "prefill_total",
                "decode_per_token"]
        for key, b in zip(keys, (vision_s, abstractor_s, decoder_s, decoder_last_s, total_s, decode_s)):
            out[key + "_s"] = round(b.wall, 6)
            out[key + "_cpu_s"] = round(b.cpu / args.threads, 6)
        print(json.dumps(out))


# ---------------------------------------------------------------- main
def main():
    p = argparse.ArgumentParser(description="Time the official PyTorch mPLUG-Owl2 at the shapes of "
                                            "`mplug-owl2 bench` (see the module docstring).")
    p.add_argument("repo", help="clone of github.com/X-PLUG/mPLUG-Owl (the folder holding mPLUG-Owl2/)")
    p.add_argument("--threads", type=int, default=2, help="torch's and OpenBLAS's threads (default 2)")
    p.add_argument("--vision-layers", type=int, default=2, help="vision encoder layers (release: 24)")
    p.add_argument("--abstractor-layers", type=int, default=1, help="abstractor layers (release: 6)")
    p.add_argument("--llm-layers", type=int, default=2, help="decoder layers (release: 32)")
    p.add_argument("--text", type=int, default=24, help="text tokens of the prompt, BOS included (default 24)")
    p.add_argument("--decode", type=int, default=8, help="tokens decoded through the key/value cache (default 8)")
    p.add_argument("--repeat", type=int, default=3, help="timed runs after the warm-up; the best is kept")
    p.add_argument("--json", action="store_true", help="end with one line of JSON holding every figure")
    p.add_argument("--tiny", action="store_true", help="the widths of reference_outputs/tiny (a quick smoke test)")
    p.add_argument("--check", action="store_true", help="run the self-checks on reference_outputs/tiny, no timing")
    args = p.parse_args()
    # at least one decoder layer: the official decoding step reads the cache's length from the last layer's
    for option, value, least, most in (("--vision-layers", args.vision_layers, 0, 24),
                                       ("--abstractor-layers", args.abstractor_layers, 0, 6),
                                       ("--llm-layers", args.llm_layers, 1, 32)):
        if not least <= value <= most:
            p.error("%s %d: expected %d to %d layers (the release's depth)" % (option, value, least, most))
    if args.text < 1:
        p.error("--text: expected at least 1 (the BOS token)")
    if args.decode < 1 or args.repeat < 1 or args.threads < 1:
        p.error("--decode, --repeat and --threads: expected at least 1")

    fx = load_fixture()
    provenance = ("commit " + fx.OFFICIAL_COMMIT if in_git(fx, args.repo, fx.OFFICIAL_FILE)
                  else "as on disk in " + args.repo)
    official = import_vision(fx, args.repo)
    llama_model, llama2 = import_decoder(fx, args.repo)
    if args.check:
        torch.set_num_threads(args.threads)
        run_checks(fx, official, llama_model, llama2)
    else:
        run_bench(args, fx, official, llama_model, llama2, provenance)


if __name__ == "__main__":
    main()
