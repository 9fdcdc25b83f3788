"""Tokenizers for models we build ourselves (scratch, builtin): a BPE trained on the data.

Pre-trained sources bring their own tokenizer; these are for models with no source.
"""

from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from trainwright.trainer.errors import TrainerError

PAD, UNK, CLS, SEP, EOS = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[EOS]"
SPECIAL_TOKENS = [PAD, UNK, CLS, SEP, EOS]


def train_tokenizer(texts, vocab_size: int, family: str) -> PreTrainedTokenizerFast:
    """A BPE tokenizer of at most `vocab_size` tokens learned from `texts` (deterministic).

    The classifier family wraps inputs as `[CLS] text [SEP]` (BERT's habit); gpt adds nothing
    and separates documents with `[EOS]` when texts are packed for causal-lm.
    """
    if vocab_size <= len(SPECIAL_TOKENS) + 1:
        raise TrainerError("spec.model.architecture.vocabSize", f"{vocab_size} is too small for a tokenizer")
    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
        limit_alphabet=vocab_size - len(SPECIAL_TOKENS),
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    if family == "classifier":
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{CLS} $A {SEP}", special_tokens=[(CLS, tokenizer.token_to_id(CLS)), (SEP, tokenizer.token_to_id(SEP))],
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token=PAD, unk_token=UNK, cls_token=CLS, sep_token=SEP, eos_token=EOS,
    )
