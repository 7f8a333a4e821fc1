"""The joint intent + entity transformer (torch): an encoder of the BERT family and two heads.

- intent head: on the pooled output, the attention-masked mean of the last hidden states
  (the pooling the MiniLM checkpoint was trained with; DistilBERT has no pooler layer at all);
- entity head: per token, on the last hidden states.

Inputs are `input_ids` and `attention_mask` only, so BERT, MiniLM and DistilBERT take the same
ones and the ONNX signature is Parley's joint signature (`services.nlu.onnx_model`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn


class JointModel(nn.Module):
    """Encoder + intent head (pooled) + entity head (per token); returns logits only."""

    def __init__(self, encoder: Any, hidden: int, intents: int, labels: int, dropout: float):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.intent_head = nn.Linear(hidden, intents)
        self.entity_head = nn.Linear(hidden, labels)

    @classmethod
    def from_encoder_dir(
        cls, directory: Path, intents: int, labels: int, dropout: float
    ) -> JointModel:
        """Load a local Hugging Face encoder (never a hub download) and add fresh heads."""
        from transformers import AutoModel

        encoder = AutoModel.from_pretrained(str(directory), local_files_only=True)
        hidden = int(getattr(encoder.config, "hidden_size", 0) or encoder.config.dim)
        return cls(encoder, hidden, intents, labels, dropout)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask)[0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        intent = self.intent_head(self.dropout(pooled))
        entities = self.entity_head(self.dropout(hidden))
        return intent, entities

    def parameter_groups(
        self, encoder_lr: float, head_lr: float, weight_decay: float
    ) -> list[dict[str, Any]]:
        """AdamW groups: the encoder fine-tuned gently, the fresh heads faster; no decay on
        biases and LayerNorm weights."""
        groups: list[dict[str, Any]] = []
        for module, lr in ((self.encoder, encoder_lr), (self, head_lr)):
            decay: list[nn.Parameter] = []
            no_decay: list[nn.Parameter] = []
            for name, param in module.named_parameters():
                if module is self and name.startswith("encoder."):
                    continue
                (no_decay if param.ndim < 2 else decay).append(param)
            groups.append({"params": decay, "lr": lr, "weight_decay": weight_decay})
            groups.append({"params": no_decay, "lr": lr, "weight_decay": 0.0})
        return groups
