"""Small real NLU models for tests: a DistilBERT encoder built from a config (no weights can be
downloaded here) with the default encoder's WordPiece vocabulary, and a tiny project to train.

Training the tiny model takes a few seconds on 2 cores; tests share one per session.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from services.nlu.training.settings import default_encoder_dir

TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)

NLU_YAML = """version: "3.1"
nlu:
- intent: greet
  examples: |
    - hi
    - hello
    - hey there
    - good morning
    - hello friend
    - hi bot
    - hey
    - good evening
- intent: goodbye
  examples: |
    - bye
    - goodbye
    - see you later
    - bye bye
    - see you
    - good night
    - farewell
    - catch you later
- intent: book_flight
  examples: |
    - fly to [Berlin](city)
    - book a flight to [Paris](city)
    - I want to fly to [Rome](city)
    - flight to [Madrid](city) please
    - get me to [Oslo](city)
    - book me a trip to [Berlin](city)
    - fly me to [Lisbon](city)
    - a flight to [Vienna](city)
    - I need a flight to [Prague](city)
    - take me to [Dublin](city)
- synonym: Berlin
  examples: |
    - berlin
- regex: zipcode
  examples: |
    - \\b[0-9]{5}\\b
"""

CONFIG_YAML = """recipe: default.v1
language: en
pipeline:
  - name: ParleyTransformer
    encoder: {encoder}
    epochs: {epochs}
    learning_rate: 0.001
    head_learning_rate: 0.003
    validation_fraction: 0.0
    max_length: 32
    threads: 2
    batch_size: 8
  - name: RegexEntityExtractor
  - name: EntitySynonymMapper
  - name: FallbackClassifier
    threshold: 0.3
policies:
  - name: RulePolicy
"""

DOMAIN_YAML = """version: "3.1"
intents: [greet, goodbye, book_flight, EXTERNAL_wake_up]
entities: [city, zipcode]
responses:
  utter_greet:
  - text: Hello!
"""


def build_distilbert_encoder(directory: Path, *, dim: int = 32, layers: int = 2) -> Path:
    """A DistilBERT encoder from a small config, randomly initialised (seeded), saved as a
    Hugging Face directory with the default encoder's WordPiece tokenizer files."""
    import torch
    from transformers import DistilBertConfig, DistilBertModel

    source = default_encoder_dir()
    torch.manual_seed(0)
    config = DistilBertConfig(
        vocab_size=30522,
        dim=dim,
        n_layers=layers,
        n_heads=2,
        hidden_dim=dim * 2,
        max_position_embeddings=128,
    )
    DistilBertModel(config).save_pretrained(str(directory))
    for name in TOKENIZER_FILES:
        shutil.copyfile(source / name, directory / name)
    return directory


def write_project(root: Path, encoder: Path, *, epochs: int = 25, extra_nlu: str = "") -> Path:
    """A tiny bot project whose config trains on `encoder`."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "data" / "nlu.yml").write_text(NLU_YAML + extra_nlu)
    (root / "config.yml").write_text(CONFIG_YAML.format(encoder=encoder, epochs=epochs))
    (root / "domain.yml").write_text(DOMAIN_YAML)
    return root
