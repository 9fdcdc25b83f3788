"""Models for each strategy, as transformers models wherever possible (so save_pretrained works).

scratch: a GPT-2 style decoder or a BERT-style classifier built from `model.architecture`.
fine-tune: `from_pretrained` on the source, with a LoRA adapter (peft) when one is asked for.
hybrid: a pre-trained backbone (`AutoModel`) under the spec's new head layers.

Speed settings (docs/trainer.md, "Speed"): attention through torch's scaled_dot_product_attention
(`ATTENTION`), a causal-lm loss that torch.compile traces in one graph (`name_causal_lm_loss`), and,
off by default until measured on a GPU, a scratch GPT's vocabulary padded to a multiple of
`VOCAB_MULTIPLE` (`PaddedVocabGPT2LMHeadModel`) and SDPA's causal flag instead of a built mask
(`CAUSAL_SDPA`).
"""

import copy
import inspect
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers import (
    AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer,
    BertConfig, BertForSequenceClassification, GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel,
)
from transformers.modeling_outputs import CausalLMOutput, SequenceClassifierOutput

from trainwright.api.spec import AdapterSpec, ArchitectureSpec, HeadLayer
from trainwright.trainer import demo
from trainwright.trainer.errors import TrainerError
from trainwright.trainer.sources import Source
from trainwright.trainer.tokenization import train_tokenizer

# Attention projections LoRA adapts by default, per model family.
LORA_TARGETS = {
    "gpt2": ["c_attn"], "bert": ["query", "value"], "distilbert": ["q_lin", "v_lin"], "roberta": ["query", "value"],
    "llama": ["q_proj", "v_proj"], "mistral": ["q_proj", "v_proj"], "qwen2": ["q_proj", "v_proj"],
    "gpt_neox": ["query_key_value"], "opt": ["q_proj", "v_proj"],
}
# Bidirectional encoders: transformers can bolt an LM head on them, but they cannot do causal-lm.
ENCODER_FAMILIES = {"bert", "roberta", "distilbert", "albert", "electra", "deberta", "deberta-v2", "xlm-roberta", "camembert"}
# Speed settings; each is exact (the same learning) and measured alone by bench/trainer_gpu.py --ablation.
ATTENTION = "sdpa"  # torch's fused attention (flash/cuDNN/memory-efficient kernels), not transformers' eager matmuls
VOCAB_MULTIPLE: int | None = None  # e.g. 64: scratch GPT embedding/LM head rows padded to a multiple (None: exact size)
CAUSAL_SDPA = "trainwright_causal_sdpa"  # ATTENTION alternative: no mask tensor when a batch has no padding (below)
BUILTIN_MODELS = {
    "tiny-gpt": ArchitectureSpec(family="gpt", layers=2, hidden=64, heads=4, vocabSize=128, contextLength=128),
    "tiny-classifier": ArchitectureSpec(family="classifier", layers=2, hidden=64, heads=4, vocabSize=128, contextLength=128),
}


@dataclass
class TaskLabels:
    """What the head predicts: None for causal-lm, else the class names in id order."""

    names: list[str] | None = None

    @property
    def count(self) -> int:
        return len(self.names or [])


@dataclass
class BuiltModel:
    model: nn.Module
    tokenizer: object
    max_length: int  # positions the model has
    backbone: list[nn.Parameter] = field(default_factory=list)  # hybrid: frozen first, lower lr later

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)


def _label_maps(labels: TaskLabels) -> dict:
    names = labels.names or []
    return {"num_labels": len(names), "id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}


def register_causal_sdpa() -> str:
    """`CAUSAL_SDPA`: transformers' SDPA attention, but with no mask tensor for a causal batch without padding.

    transformers builds a (batch, 1, q, kv) mask whenever it cannot prove from the host that none
    is needed, and under torch.compile it never can on torch < 2.14, so SDPA gets `attn_mask` and
    cannot use the flash kernel. With this implementation a causal layer given no padding mask (the
    loop passes none for a batch without padding, `LoopConfig.omit_full_mask`) gets `is_causal=True`
    instead: the same attention. Anything else (padding, decoding with a cache, packed sequences,
    bidirectional encoders) goes to transformers' own mask builder.
    """
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import AttentionMaskInterface, causal_mask_function, sdpa_mask

    def mask(**kwargs):
        plain_causal = kwargs.get("mask_function") is causal_mask_function and kwargs.get("q_length") == kwargs.get("kv_length")
        from_start = all(isinstance(kwargs.get(k, 0), int) and kwargs.get(k, 0) == 0 for k in ("q_offset", "kv_offset"))
        if kwargs.get("attention_mask") is None and plain_causal and from_start:
            return None
        return sdpa_mask(**kwargs)

    AttentionInterface.register(CAUSAL_SDPA, sdpa_attention_forward)
    AttentionMaskInterface.register(CAUSAL_SDPA, mask)
    return CAUSAL_SDPA


def name_causal_lm_loss(model: nn.Module) -> nn.Module:
    """Name the causal-lm loss for models whose class name does not (GPT-2's `GPT2LMHeadModel`).

    Unnamed, transformers logs a warning from inside `forward` on every trace, and torch.compile
    breaks the graph there: the logits leave one graph and the loss is a second one. Named, it is
    the same function (`ForCausalLMLoss`, transformers' fallback) in one graph.
    """
    if getattr(model, "loss_type", "") is None:
        model.loss_type = "ForCausalLM"
    return model


class PaddedVocabGPT2LMHeadModel(GPT2LMHeadModel):
    """GPT-2 whose (tied) embedding and LM head have `padded_vocab` rows, a multiple of 64 or 128 that
    tensor-core matmuls like (50257 -> 50304), but whose vocabulary is still `config.vocab_size`.

    The logits are sliced to the real vocabulary before anything reads them, so the loss, argmax
    and generation never see a padded id, and the padded rows (zeros) get no gradient. Every other
    weight is initialised exactly as in the unpadded model (same RNG draws). `save_pretrained` writes
    a plain `GPT2LMHeadModel` of the real size, loadable anywhere.
    """

    def __init__(self, config: GPT2Config, vocab_multiple: int):
        super().__init__(config)
        vocab = config.vocab_size
        self.padded_vocab = -(-vocab // vocab_multiple) * vocab_multiple
        if self.padded_vocab != vocab:  # new modules would draw from the RNG: the weight alone is replaced
            padded = torch.zeros(self.padded_vocab, config.n_embd, dtype=self.transformer.wte.weight.dtype)
            padded[:vocab] = self.transformer.wte.weight.detach()
            self.transformer.wte.weight = self.lm_head.weight = nn.Parameter(padded)  # tied, as GPT-2's are
            self.transformer.wte.num_embeddings = self.lm_head.out_features = self.padded_vocab
        name_causal_lm_loss(self)

    def forward(self, *args, labels=None, **kwargs):
        loss_kwargs = {k: kwargs.pop(k) for k in ("num_items_in_batch", "ignore_index", "shift_labels") if k in kwargs}
        output = super().forward(*args, **kwargs)
        output.logits = output.logits[..., :self.config.vocab_size]
        if labels is not None:  # .float() of a sliced bf16 tensor is contiguous; an fp32 slice needs the copy
            output.loss = self.loss_function(output.logits.float().contiguous(), labels, vocab_size=self.config.vocab_size,
                                             **loss_kwargs)
        return output

    def save_pretrained(self, save_directory, *args, **kwargs):
        vocab = self.config.vocab_size
        state = {k: v[:vocab] if k in ("transformer.wte.weight", "lm_head.weight") else v for k, v in self.state_dict().items()}
        with torch.device("meta"):
            plain = GPT2LMHeadModel(copy.deepcopy(self.config))
        plain.load_state_dict(state, assign=True)
        plain.lm_head.weight = plain.transformer.wte.weight
        plain.generation_config = self.generation_config
        return plain.save_pretrained(save_directory, *args, **kwargs)


# generate() reads forward's parameters (logits_to_keep, attention_mask, ...): show GPT-2's
PaddedVocabGPT2LMHeadModel.forward.__signature__ = inspect.signature(GPT2LMHeadModel.forward)


def build_scratch(arch: ArchitectureSpec, task: str, tokenizer, labels: TaskLabels, *,
                  vocab_multiple: int | None = VOCAB_MULTIPLE, attention: str = ATTENTION) -> nn.Module:
    """A randomly initialised transformers model of the spec's size (torch's global RNG seeds it).

    `vocab_multiple` pads a causal-lm GPT's embedding/LM head (`PaddedVocabGPT2LMHeadModel`);
    `attention` is the attention implementation (`ATTENTION`, or `CAUSAL_SDPA` for a GPT).
    """
    heads = arch.heads or max(1, arch.hidden // 64)
    if arch.hidden % heads:
        raise TrainerError("spec.model.architecture.heads", f"hidden {arch.hidden} is not a multiple of {heads} heads")
    if len(tokenizer) > arch.vocabSize:
        raise TrainerError("spec.model.architecture.vocabSize", f"{arch.vocabSize} is smaller than the tokenizer's {len(tokenizer)} tokens")
    if attention == CAUSAL_SDPA:
        register_causal_sdpa()
    if arch.family == "gpt":
        config = GPT2Config(
            vocab_size=arch.vocabSize, n_positions=arch.contextLength, n_embd=arch.hidden, n_layer=arch.layers,
            n_head=heads, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.eos_token_id, attn_implementation=attention,
            **({} if task == "causal-lm" else _label_maps(labels)),
        )
        if task != "causal-lm":
            return GPT2ForSequenceClassification(config)
        if vocab_multiple and vocab_multiple > 1:
            return PaddedVocabGPT2LMHeadModel(config, vocab_multiple)
        return name_causal_lm_loss(GPT2LMHeadModel(config))
    if task == "causal-lm":
        raise TrainerError("spec.model.architecture.family", "a classifier cannot do causal-lm; use family gpt")
    config = BertConfig(
        vocab_size=arch.vocabSize, hidden_size=arch.hidden, num_hidden_layers=arch.layers, num_attention_heads=heads,
        intermediate_size=4 * arch.hidden, max_position_embeddings=arch.contextLength,
        pad_token_id=tokenizer.pad_token_id, attn_implementation="sdpa" if attention == CAUSAL_SDPA else attention,
        **_label_maps(labels),
    )
    return BertForSequenceClassification(config)


# A scratch tokenizer learns from the first this many bytes of training text: BPE's merges for a
# vocabulary of tens of thousands settle within a few MB, and its word counts (memory and time)
# grow with the sample, so a corpus of any size trains its tokenizer in the same bounded work.
TOKENIZER_SAMPLE_BYTES = 8 * 1024 * 1024


def scratch_tokenizer(arch: ArchitectureSpec, texts: Iterable[str], sample_bytes: int = TOKENIZER_SAMPLE_BYTES):
    """A tokenizer trained from an iterator over the texts, reading no further than `sample_bytes`."""
    return train_tokenizer(_bounded(texts, sample_bytes), arch.vocabSize, arch.family)


def _bounded(texts: Iterable[str], limit: int) -> Iterator[str]:
    seen = 0
    for text in texts:
        if seen >= limit:
            return
        seen += len(text.encode("utf-8"))
        yield text


def _builtin(name: str, task: str, labels: TaskLabels) -> BuiltModel:
    if name not in BUILTIN_MODELS:
        raise TrainerError("spec.model.source", f"builtin:{name}: unknown built-in model; one of "
                           + ", ".join(f"builtin:{n}" for n in BUILTIN_MODELS))
    arch = BUILTIN_MODELS[name]
    tokenizer = train_tokenizer([" ".join(demo.WORDS)], arch.vocabSize, arch.family)
    # never padded: a hybrid head over a built-in backbone has one output per embedding row
    return BuiltModel(build_scratch(arch, task, tokenizer, labels, vocab_multiple=None), tokenizer, arch.contextLength)


def _pretrained_location(source: Source) -> str:
    if source.kind == "hf":
        return source.value
    if source.kind == "s3":  # copied to local disk once (kept while the ETags match), then as a folder
        from trainwright.trainer import storage

        source = Source("local", str(storage.local_copy(source, storage.cache_dir())), source.text, source.field)
    path = source.path
    if not path.exists():
        where = f" ({path})" if source.text != str(path) else ""
        raise TrainerError("spec.model.source", f"{source.text} does not exist{where}")
    if not (path / "config.json").exists():
        raise TrainerError("spec.model.source", f"{source.text} is not a save_pretrained directory (no config.json in {path})")
    unreadable = sorted(f.name for f in path.iterdir() if f.is_file() and not os.access(f, os.R_OK))
    if unreadable:  # transformers reports these as missing files
        raise TrainerError("spec.model.source", f"{source.text}: {', '.join(unreadable)} not readable by uid {os.getuid()} "
                           "(make the files readable to all, e.g. chmod -R a+rX, or owned by the pod's fsGroup)")
    return str(path)


def _load_tokenizer(location: str, source: Source):
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
    except (OSError, ValueError) as error:
        raise TrainerError("spec.model.source", f"{source.text}: cannot load its tokenizer: {error}") from None
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise TrainerError("spec.model.source", f"{source.text}: its tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _positions(config) -> int:
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return 1 << 20


def _quiet_loading() -> None:
    """Loading into a new head lists every fresh weight; our messages say what matters."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()


def load_pretrained(source: Source, task: str, labels: TaskLabels) -> BuiltModel:
    """A pre-trained model with the head `task` needs (a new one when the label count differs)."""
    _quiet_loading()
    if source.kind == "builtin":
        return _builtin(source.value, task, labels)
    location = _pretrained_location(source)
    tokenizer = _load_tokenizer(location, source)
    try:
        config = AutoConfig.from_pretrained(location)
        if task == "causal-lm" and config.model_type in ENCODER_FAMILIES and not getattr(config, "is_decoder", False):
            raise TrainerError("spec.model.source", f"{source.text}: a {config.model_type} model is a bidirectional encoder and "
                               "cannot do causal-lm; use a decoder (e.g. gpt2)")
        if task == "causal-lm":
            model = name_causal_lm_loss(AutoModelForCausalLM.from_pretrained(location))
        else:
            model = AutoModelForSequenceClassification.from_pretrained(
                location, ignore_mismatched_sizes=True, pad_token_id=tokenizer.pad_token_id, **_label_maps(labels),
            )
    except ValueError as error:
        if "Unrecognized configuration class" in str(error):
            raise TrainerError("spec.model.source", f"{source.text}: a {config.model_type} model cannot do {task}") from None
        raise TrainerError("spec.model.source", f"{source.text}: cannot load: {error}") from None
    except OSError as error:
        raise TrainerError("spec.model.source", f"{source.text}: cannot load: {error}") from None
    _check_vocabulary(model, tokenizer, source)
    return BuiltModel(model, tokenizer, _positions(config))


def _check_vocabulary(model: nn.Module, tokenizer, source: Source) -> None:
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        raise TrainerError("spec.model.source", f"{source.text}: the tokenizer has {len(tokenizer)} tokens but the model embeds only {rows}")


def apply_lora(built: BuiltModel, adapter: AdapterSpec, task: str) -> BuiltModel:
    """Freeze the base, add LoRA matrices; a classification head stays trainable (it is new)."""
    from peft import LoraConfig, TaskType, get_peft_model

    model_type = built.model.config.model_type
    targets = adapter.targetModules or LORA_TARGETS.get(model_type)
    if targets is None:
        raise TrainerError("spec.model.adapter.targetModules", f"no default LoRA targets for {model_type!r} models; list the module names")
    config = LoraConfig(
        r=adapter.rank, lora_alpha=adapter.alpha or 2 * adapter.rank, lora_dropout=adapter.dropout,
        target_modules=targets, task_type=TaskType.CAUSAL_LM if task == "causal-lm" else TaskType.SEQ_CLS,
    )
    try:
        model = get_peft_model(built.model, config)
    except ValueError as error:
        raise TrainerError("spec.model.adapter.targetModules", str(error)) from None
    return BuiltModel(model, built.tokenizer, built.max_length)


def build_head(layers: list[HeadLayer], width: int, outputs: int) -> nn.Sequential:
    """The spec's layers, then a linear layer to `outputs` (classes, or the vocabulary)."""
    modules: list[nn.Module] = []
    for layer in layers:
        if layer.type == "linear":
            modules.append(nn.Linear(width, layer.size))
            width = layer.size
        elif layer.type == "dropout":
            modules.append(nn.Dropout(layer.p))
        elif layer.type == "layernorm":
            modules.append(nn.LayerNorm(width))
        else:
            modules.append({"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}[layer.type]())
    modules.append(nn.Linear(width, outputs))
    return nn.Sequential(*modules)


class HybridModel(nn.Module):
    """A pre-trained backbone's hidden states through new head layers.

    Classification pools the hidden states (mean over real tokens); causal-lm applies the
    head to every position and predicts the next token.
    """

    def __init__(self, backbone: nn.Module, head: nn.Sequential, task: str, head_spec: list[dict]):
        super().__init__()
        self.backbone, self.head, self.task, self.head_spec = backbone, head, task, head_spec

    def forward(self, input_ids, attention_mask=None, labels=None):
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.task == "causal-lm":
            logits = self.head(hidden)
            loss = None
            if labels is not None:
                loss = nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)
            return CausalLMOutput(loss=loss, logits=logits)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype) if attention_mask is not None else torch.ones_like(hidden[..., :1])
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        logits = self.head(pooled)
        loss = nn.functional.cross_entropy(logits.float(), labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def save_pretrained(self, directory: str | Path) -> None:
        """backbone/ in save_pretrained format, the head's weights and layers beside it."""
        directory = Path(directory)
        self.backbone.save_pretrained(directory / "backbone")
        torch.save(self.head.state_dict(), directory / "head.pt")
        (directory / "head.json").write_text(json.dumps({"task": self.task, "layers": self.head_spec,
                                                         "outputs": self.head[-1].out_features}, indent=2))


def load_hybrid(source: Source, task: str, head_layers: list[HeadLayer], labels: TaskLabels) -> BuiltModel:
    _quiet_loading()
    if source.kind == "builtin":
        built = _builtin(source.value, "causal-lm" if BUILTIN_MODELS.get(source.value, BUILTIN_MODELS["tiny-gpt"]).family == "gpt" else task, labels)
        backbone = built.model.base_model
        tokenizer, max_length = built.tokenizer, built.max_length
    else:
        location = _pretrained_location(source)
        tokenizer = _load_tokenizer(location, source)
        try:
            backbone = AutoModel.from_pretrained(location)
        except (OSError, ValueError) as error:
            raise TrainerError("spec.model.source", f"{source.text}: cannot load a backbone: {error}") from None
        _check_vocabulary(backbone, tokenizer, source)
        max_length = _positions(backbone.config)
    outputs = backbone.get_input_embeddings().weight.shape[0] if task == "causal-lm" else labels.count
    head = build_head(head_layers, backbone.config.hidden_size, outputs)
    model = HybridModel(backbone, head, task, [layer.to_wire() for layer in head_layers])
    return BuiltModel(model, tokenizer, max_length, backbone=list(backbone.parameters()))
