"""The speed settings change no learning: each lever in miniature, on CPU, asserted on real numbers.

bench/trainer_gpu.py --ablation measures their speed (and the same loss parity, full size) on a GPU.
"""

import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook
from transformers import AutoModelForCausalLM, GPT2LMHeadModel

from trainwright.api.spec import ArchitectureSpec
from trainwright.trainer import loop
from trainwright.trainer.data import TokenizedSet
from trainwright.trainer.loop import LoopConfig, model_inputs, train
from trainwright.trainer.models import (
    CAUSAL_SDPA, BuiltModel, TaskLabels, build_scratch, load_pretrained, name_causal_lm_loss,
)
from trainwright.trainer.sources import resolve_source
from trainwright.trainer.tokenization import train_tokenizer

CPU = torch.device("cpu")
VOCAB = 100  # the architecture's vocabulary; padded to 128 by a multiple of 64
ARCH = ArchitectureSpec(family="gpt", layers=2, hidden=32, heads=2, vocabSize=VOCAB, contextLength=32)
PARITY = 0.02  # the issue's bound on the smoothed loss curves' relative difference


def tokenizer():
    words = [f"w{i}" for i in range(200)]
    return train_tokenizer([" ".join(words)], VOCAB, "gpt")


def gpt(vocab_multiple=None, attention="sdpa", dropout=False) -> nn.Module:
    torch.manual_seed(0)
    model = build_scratch(ARCH, "causal-lm", tokenizer(), TaskLabels(), vocab_multiple=vocab_multiple, attention=attention)
    if not dropout:
        for module in model.modules():
            if isinstance(module, nn.Dropout):
                module.p = 0.0
    return model


def bigram_blocks(count: int, length: int = 32, seed: int = 0) -> list[list[int]]:
    """Learnable token streams: each id has 3 likely successors (ids 5..VOCAB-1; 0-4 are special tokens)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.arange(5, VOCAB)
    successors = ids[torch.randint(0, len(ids), (VOCAB, 3), generator=generator)]
    current = ids[torch.randint(0, len(ids), (count,), generator=generator)]
    blocks = [current]
    for _ in range(length - 1):
        choice = torch.multinomial(torch.tensor([0.6, 0.3, 0.1]).expand(count, 3), 1, generator=generator).squeeze(1)
        current = successors[current, choice]
        blocks.append(current)
    return torch.stack(blocks, 1).tolist()


class Losses:
    """A reporter that keeps the loop's reported losses: each the mean of the steps since the last report."""

    def __init__(self):
        self.by_step: dict[int, float] = {}

    def on_step(self, progress):
        self.by_step.setdefault(progress.step, progress.loss)

    def on_eval(self, metrics): pass
    def on_checkpoint(self, step, path): pass
    def close(self): pass


def loss_curve(model: nn.Module, omit_full_mask: bool, steps: int = 50, window: int = 5) -> list[float]:
    """`steps` steps of batch 8 x 32 tokens; the curve is the mean loss of each `window` steps."""
    data = TokenizedSet(bigram_blocks(steps * 8), None, pad_id=0, task="causal-lm")
    config = LoopConfig(task="causal-lm", epochs=1, batch_size=8, lr=3e-3, warmup_ratio=0.1, log_every=window, seed=0,
                        omit_full_mask=omit_full_mask, checkpoint_every=10**9)
    torch.manual_seed(1)
    losses = Losses()
    train(BuiltModel(model, None, ARCH.contextLength), data, None, config, device=CPU, reporter=losses)
    return [losses.by_step[s] for s in range(window, steps + 1, window)]


def max_relative_difference(curve: list[float], reference: list[float]) -> float:
    return max(abs(a - b) / b for a, b in zip(curve, reference, strict=True))


def test_the_levers_do_not_change_the_loss_curve():
    # off: transformers' eager attention, the exact vocabulary, the all-ones mask passed, the loss unnamed
    torch.manual_seed(0)
    off_model = GPT2LMHeadModel(gpt(attention="eager").config)  # build_scratch names the loss; the old model did not
    off_model.load_state_dict(gpt(attention="eager").state_dict())
    for module in off_model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    assert off_model.loss_type is None and off_model.config._attn_implementation == "eager"
    off = loss_curve(off_model, omit_full_mask=False)
    on_model = gpt(vocab_multiple=64, attention=CAUSAL_SDPA)
    assert on_model.padded_vocab == 128 and on_model.config._attn_implementation == CAUSAL_SDPA
    on = loss_curve(on_model, omit_full_mask=True)

    assert off[-1] < 0.8 * off[0], f"the model should learn, or the comparison means nothing: {off}"
    assert max_relative_difference(on, off) < PARITY, (on, off)

    # The measure can tell: padded logits left in the softmax (the padded ids compete for probability)
    broken = gpt(vocab_multiple=64)
    broken.config.vocab_size = broken.padded_vocab
    broken.forward = lambda *args, **kwargs: GPT2LMHeadModel.forward(broken, *args, **kwargs)
    unmasked = loss_curve(broken, omit_full_mask=True)
    assert max_relative_difference(unmasked, off) > PARITY, (unmasked, off)


def test_the_padded_model_never_predicts_a_padded_id(tmp_path):
    model = gpt(vocab_multiple=64).eval()
    assert model.transformer.wte.weight.shape[0] == 128 and model.lm_head.weight is model.transformer.wte.weight
    assert model.config.vocab_size == VOCAB
    with torch.no_grad():  # make every padded id the unsliced head's favourite: hidden states along e0, padded rows too
        model.transformer.ln_f.weight.fill_(1e-3)
        model.transformer.ln_f.bias.zero_()
        model.transformer.ln_f.bias[0] = 50.0
        model.transformer.wte.weight[VOCAB:] = 0.0
        model.transformer.wte.weight[VOCAB:, 0] = 10.0
    input_ids = torch.tensor(bigram_blocks(2, length=8))
    with torch.no_grad():
        hidden = model.transformer(input_ids=input_ids).last_hidden_state
        unsliced = model.lm_head(hidden)
        logits = model(input_ids=input_ids).logits
    assert (unsliced.argmax(-1) >= VOCAB).all()  # what a model without the slice would predict
    assert logits.shape[-1] == VOCAB
    torch.testing.assert_close(logits, unsliced[..., :VOCAB])
    assert (logits.argmax(-1) < VOCAB).all()

    generated = model.generate(input_ids[:, :4], max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert generated.shape[1] == 10 and (generated < VOCAB).all()
    sampled = model.generate(input_ids[:, :4], max_new_tokens=6, do_sample=True, top_k=0, pad_token_id=0)
    assert (sampled < VOCAB).all()

    model.save_pretrained(tmp_path)  # a plain GPT-2 of the real size, loadable without this module
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is GPT2LMHeadModel and loaded.config.vocab_size == VOCAB
    assert loaded.get_input_embeddings().weight.shape[0] == VOCAB
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=input_ids).logits, logits)


def test_padding_keeps_the_other_weights_and_the_loss():
    plain, padded = gpt(), gpt(vocab_multiple=64)
    padded_state = padded.state_dict()
    for name, weight in plain.state_dict().items():
        expected = padded_state[name][:VOCAB] if name in ("transformer.wte.weight", "lm_head.weight") else padded_state[name]
        torch.testing.assert_close(weight, expected, rtol=0, atol=0)
    batch = {"input_ids": torch.tensor(bigram_blocks(4)), "labels": torch.tensor(bigram_blocks(4))}
    plain_loss, padded_loss = plain(**batch).loss, padded(**batch).loss
    torch.testing.assert_close(padded_loss, plain_loss)
    padded_loss.backward()
    assert padded.transformer.wte.weight.grad[VOCAB:].abs().max() == 0  # padded rows learn nothing


def test_gradient_accumulation_matches_one_big_batch():
    data = TokenizedSet(bigram_blocks(32), None, pad_id=0, task="causal-lm")

    def first_gradients(batch_size: int, accumulation: int) -> dict[str, torch.Tensor]:
        model, seen = gpt(), {}

        def keep(optimizer, args, kwargs):
            if not seen:
                seen.update({n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None})

        config = LoopConfig(task="causal-lm", batch_size=batch_size, grad_accum=accumulation, lr=1e-3, max_grad_norm=1e9,
                            max_steps=1, checkpoint_every=10**9)
        handle = register_optimizer_step_pre_hook(keep)
        try:
            train(BuiltModel(model, None, ARCH.contextLength), data, None, config, device=CPU)
        finally:
            handle.remove()
        return seen

    whole, accumulated, half = first_gradients(16, 1), first_gradients(4, 4), first_gradients(4, 1)
    assert whole.keys() == accumulated.keys() and len(whole) > 10
    for name in whole:
        torch.testing.assert_close(accumulated[name], whole[name], rtol=1e-4, atol=1e-6)
    differs = [name for name in whole if not torch.allclose(half[name], whole[name], rtol=1e-4, atol=1e-6)]
    assert len(differs) > len(whole) // 2  # a quarter of the batch has other gradients: the comparison can fail


def test_a_batch_without_padding_goes_without_a_mask_and_the_loss_is_the_same():
    config = LoopConfig(task="causal-lm")
    even = TokenizedSet(bigram_blocks(4, length=12), None, pad_id=0, task="causal-lm")
    uneven = TokenizedSet([s[: 6 + i] for i, s in enumerate(bigram_blocks(4, length=12))], None, pad_id=0, task="causal-lm")
    assert "attention_mask" not in model_inputs(even, [0, 1, 2, 3], CPU, config)
    assert "attention_mask" in model_inputs(uneven, [0, 1, 2, 3], CPU, config)
    assert "attention_mask" in model_inputs(even, [0, 1, 2, 3], CPU, LoopConfig(task="causal-lm", omit_full_mask=False))

    masked = even.collate([0, 1, 2, 3])
    for attention in ("eager", "sdpa", CAUSAL_SDPA):
        model = gpt(attention=attention)
        with torch.no_grad():
            without = model(**model_inputs(even, [0, 1, 2, 3], CPU, config))
            with_mask = model(**masked)
        torch.testing.assert_close(without.logits, with_mask.logits)
        torch.testing.assert_close(without.loss, with_mask.loss)


def test_causal_sdpa_keeps_the_padding_mask():
    data = TokenizedSet([s[: 6 + 2 * i] for i, s in enumerate(bigram_blocks(3, length=12))], None, pad_id=0, task="causal-lm")
    batch = model_inputs(data, [0, 1, 2], CPU, LoopConfig(task="causal-lm"))
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        stock = gpt(attention="sdpa")(**batch).logits
        causal = gpt(attention=CAUSAL_SDPA)(**batch).logits
    torch.testing.assert_close(causal[real], stock[real])


def sdpa_calls(model: nn.Module, **inputs) -> tuple[int, list[dict]]:
    """What torch.compile would see: the number of graphs, and each SDPA call's mask and causal flag."""
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model)(**inputs)
    calls = [{"mask": node.kwargs.get("attn_mask") is not None, "is_causal": node.kwargs.get("is_causal")}
             for graph in explained.graphs for node in graph.graph.nodes if "scaled_dot_product" in str(node.target)]
    torch._dynamo.reset()
    return explained.graph_count, calls


def test_compiled_the_named_loss_is_one_graph_and_causal_sdpa_builds_no_mask():
    ids = torch.tensor(bigram_blocks(2, length=16))
    unnamed = GPT2LMHeadModel(gpt().config)
    assert unnamed.loss_type is None
    graphs, _ = sdpa_calls(unnamed, input_ids=ids, labels=ids)
    assert graphs == 2  # the loss in a graph of its own
    graphs, calls = sdpa_calls(name_causal_lm_loss(unnamed), input_ids=ids, labels=ids)
    assert graphs == 1 and len(calls) == ARCH.layers

    graphs, calls = sdpa_calls(gpt(vocab_multiple=64, attention=CAUSAL_SDPA), input_ids=ids, labels=ids)
    assert graphs == 1 and calls == [{"mask": False, "is_causal": True}] * ARCH.layers
    graphs, calls = sdpa_calls(gpt(attention=CAUSAL_SDPA), input_ids=ids, labels=ids, attention_mask=torch.ones_like(ids))
    assert calls == [{"mask": True, "is_causal": False}] * ARCH.layers  # given a mask, it is used


def test_compile_mode_reaches_torch_compile(monkeypatch):
    modes = []

    def fake_compile(module, **kwargs):
        modes.append(kwargs.get("mode"))
        return module

    monkeypatch.setattr(loop.torch, "compile", fake_compile)
    data = TokenizedSet(bigram_blocks(8), None, pad_id=0, task="causal-lm")
    config = LoopConfig(task="causal-lm", batch_size=4, compile=True, compile_mode="reduce-overhead", max_steps=1,
                        checkpoint_every=10**9)
    train(BuiltModel(gpt(), None, ARCH.contextLength), data, None, config, device=CPU)
    assert modes == ["reduce-overhead"]


@pytest.mark.parametrize("multiple, rows", [(64, 128), (128, 128), (None, VOCAB), (1, VOCAB)])
def test_vocab_multiple(multiple, rows):
    model = gpt(vocab_multiple=multiple)
    assert model.get_input_embeddings().weight.shape[0] == rows
    assert model.get_output_embeddings().weight.shape[0] == rows
    assert model.config.vocab_size == VOCAB


def test_built_and_loaded_models_attend_through_sdpa_with_a_named_loss(tmp_path):
    scratch = gpt()
    assert scratch.config._attn_implementation == "sdpa" and scratch.loss_type == "ForCausalLM"
    classifier = build_scratch(ArchitectureSpec(family="classifier", layers=1, hidden=32, heads=2, vocabSize=VOCAB),
                               "sequence-classification", train_tokenizer(["a b c"], VOCAB, "classifier"), TaskLabels(["x", "y"]))
    assert classifier.config._attn_implementation == "sdpa"

    GPT2LMHeadModel(scratch.config).save_pretrained(tmp_path / "gpt")  # as a hub model would come: loss unnamed
    tokenizer().save_pretrained(tmp_path / "gpt")
    loaded = load_pretrained(resolve_source(str(tmp_path / "gpt"), "."), "causal-lm", TaskLabels()).model
    assert loaded.config._attn_implementation == "sdpa" and loaded.loss_type == "ForCausalLM"


def test_padding_draws_nothing_from_the_rng():
    torch.manual_seed(0)
    build_scratch(ARCH, "causal-lm", tokenizer(), TaskLabels(), vocab_multiple=None)
    after_plain = torch.rand(3)
    torch.manual_seed(0)
    build_scratch(ARCH, "causal-lm", tokenizer(), TaskLabels(), vocab_multiple=64)
    torch.testing.assert_close(torch.rand(3), after_plain, rtol=0, atol=0)  # dropout masks come out the same
