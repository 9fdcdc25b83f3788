"""The built-in demo task family: small synthetic data sets a CPU learns in about a minute.

Sequences of words from four topics. Task A (`builtin:topics`): which topic dominates a
sequence (4 classes). Task B (`builtin:living`): is the dominant topic a living thing
(animals, fruits) or not (colours, tools). B is A coarse-grained, so a model that learned A
adapts to B with a few steps, while a model learning B from scratch must first learn what
A's model already knows. `builtin:patterns` is a tiny language for causal-lm.
"""

import random

TOPICS: dict[str, tuple[str, ...]] = {
    "animals": ("cat", "dog", "fox", "owl", "bee", "eel", "yak", "ant"),
    "fruits": ("apple", "pear", "plum", "fig", "lime", "kiwi", "date", "grape"),
    "colours": ("red", "blue", "green", "teal", "pink", "gold", "grey", "cyan"),
    "tools": ("saw", "axe", "drill", "file", "vice", "rake", "hoe", "awl"),
}
LIVING = {"animals": "living", "fruits": "living", "colours": "non-living", "tools": "non-living"}
VERBS = ("eats", "sees", "likes", "finds")
DETERMINERS = ("the", "a")
WORDS = sorted({w for words in TOPICS.values() for w in words} | set(VERBS) | set(DETERMINERS) | {"."})

DEFAULT_SAMPLES = {"topics": 3000, "living": 600, "patterns": 2000}
# A fixed seed per set: the data is the same whatever the training seed (which orders it).
DATA_SEEDS = {"topics": 1, "living": 2, "patterns": 3}
DOMINANT_SHARE = 0.35  # chance that a word comes from the sequence's own topic


def _topic_sequence(rng: random.Random) -> tuple[str, str]:
    names = list(TOPICS)
    topic = rng.choice(names)
    words = []
    for _ in range(rng.randint(8, 16)):
        source = topic if rng.random() < DOMINANT_SHARE else rng.choice(names)
        words.append(rng.choice(TOPICS[source]))
    return " ".join(words), topic


def _sentence(rng: random.Random) -> str:
    return (f"{rng.choice(DETERMINERS)} {rng.choice(TOPICS['animals'])} {rng.choice(VERBS)} "
            f"{rng.choice(DETERMINERS)} {rng.choice(TOPICS['fruits'])} .")


def builtin_dataset_names() -> list[str]:
    return sorted(DEFAULT_SAMPLES)


def builtin_records(name: str, samples: int | None = None) -> list[dict]:
    """Rows of the built-in set `name`: {"text", "label"} (classification) or {"text"} (patterns)."""
    count = samples or DEFAULT_SAMPLES[name]
    rng = random.Random(DATA_SEEDS[name])
    if name == "patterns":
        return [{"text": " ".join(_sentence(rng) for _ in range(4))} for _ in range(count)]
    rows = []
    for _ in range(count):
        text, topic = _topic_sequence(rng)
        rows.append({"text": text, "label": topic if name == "topics" else LIVING[topic]})
    return rows


def demo_job(name: str, strategy: str, dataset: str, model: dict, training: dict | None = None) -> dict:
    """A TrainingJob manifest (a dict) for one run of the demo, sized for a CPU."""
    return {
        "apiVersion": "trainwright.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "strategy": strategy,
            "model": {"task": "sequence-classification", **model},
            "dataset": {"source": f"builtin:{dataset}", "samples": DEFAULT_SAMPLES[dataset], "validationSplit": 0.2},
            "resources": {"gpus": 0},
            "training": {"epochs": 3, "batchSize": 32, "maxSeqLength": 32, "seed": 0, **(training or {})},
            "checkpoint": {"everySteps": 1000, "keep": 1},
        },
    }


DEMO_ARCHITECTURE = {"family": "classifier", "layers": 2, "hidden": 64, "heads": 4, "vocabSize": 128, "contextLength": 64}


def demo_jobs(base_model_dir: str) -> dict[str, dict]:
    """The demo: a scratch base model on task A, then the three strategies on task B."""
    return {
        "base": demo_job("demo-base", "scratch", "topics", {"architecture": DEMO_ARCHITECTURE},
                         {"epochs": 4, "learningRate": 1e-3}),
        "scratch": demo_job("demo-scratch", "scratch", "living", {"architecture": DEMO_ARCHITECTURE},
                            {"learningRate": 1e-3}),
        "fine-tune": demo_job("demo-fine-tune", "fine-tune", "living",
                              {"source": base_model_dir, "adapter": {"rank": 8}}, {"learningRate": 2e-3}),
        "hybrid": demo_job("demo-hybrid", "hybrid", "living",
                           {"source": base_model_dir, "head": [{"type": "linear", "size": 64}, {"type": "gelu"}]},
                           {"learningRate": 1e-3, "freezeEpochs": 1, "backboneLrScale": 0.1}),
    }
