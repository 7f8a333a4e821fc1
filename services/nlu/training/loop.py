"""Fine-tuning the joint model with torch: seeded, length-bucketed batches, AdamW with a linear
warm-up and decay, early stopping on the held-out split, a progress bar, and a summary.

The best epoch on the held-out split (intent accuracy and entity F1 averaged; loss breaks
ties) is the one kept. Without a held-out split every epoch runs and the last is kept.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np
import torch
from torch import nn

from services.nlu.bio import decode_entities
from services.nlu.parse_data import softmax
from services.nlu.tokenizer import WordPieceTokenizer
from services.nlu.training.data import IGNORE, EncodedExample, LabelMaps
from services.nlu.training.joint import JointModel
from services.nlu.training.settings import TrainSettings

logger = logging.getLogger(__name__)
ProgressFactory = Callable[..., Any]


@dataclass
class EpochScore:
    """How one epoch did on the held-out split."""

    epoch: int
    train_loss: float
    loss: float | None = None
    intent_accuracy: float | None = None
    entity_f1: float | None = None

    @property
    def score(self) -> float:
        parts = [p for p in (self.intent_accuracy, self.entity_f1) if p is not None]
        return sum(parts) / len(parts) if parts else -self.train_loss


@dataclass
class TrainSummary:
    """What training did, for the archive's metadata and the closing table."""

    train_examples: int
    held_out_examples: int
    intents: int
    entity_labels: int
    epochs_run: int
    best_epoch: int
    wall_s: float
    steps: int
    history: list[EpochScore] = field(default_factory=list)
    stopped_early: bool = False

    @property
    def best(self) -> EpochScore:
        return self.history[self.best_epoch - 1]

    def as_dict(self) -> dict[str, Any]:
        return {
            "train_examples": self.train_examples,
            "held_out_examples": self.held_out_examples,
            "intents": self.intents,
            "entity_labels": self.entity_labels,
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "wall_s": round(self.wall_s, 1),
            "steps": self.steps,
            "held_out_intent_accuracy": self.best.intent_accuracy,
            "held_out_entity_f1": self.best.entity_f1,
            "history": [vars(h) for h in self.history],
        }

    def render(self) -> str:
        """The closing summary, a few aligned lines."""

        def pct(value: float | None) -> str:
            return "n/a (no held-out split)" if value is None else f"{value:.1%}"

        best = self.best
        rate = self.train_examples * self.epochs_run / self.wall_s if self.wall_s else 0.0
        rows = [
            ("examples", f"{self.train_examples} train, {self.held_out_examples} held out"),
            ("labels", f"{self.intents} intents, {self.entity_labels} entity BIO labels"),
            (
                "epochs",
                f"{self.epochs_run} run, best {self.best_epoch}"
                + (" (stopped early)" if self.stopped_early else ""),
            ),
            ("held-out intent accuracy", pct(best.intent_accuracy)),
            ("held-out entity F1", pct(best.entity_f1)),
            ("wall time", f"{self.wall_s:.1f} s ({rate:.0f} examples/s, {self.steps} steps)"),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"  {name.ljust(width)}  {value}" for name, value in rows)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def batches(
    examples: Sequence[EncodedExample], size: int, rng: random.Random | None
) -> list[list[EncodedExample]]:
    """Batches of similar lengths (less padding): shuffled chunks sorted by length, then the
    batches shuffled. Without `rng`, in order (evaluation)."""
    items = list(examples)
    if rng is None:
        return [items[i : i + size] for i in range(0, len(items), size)]
    rng.shuffle(items)
    chunk = size * 50
    out: list[list[EncodedExample]] = []
    for start in range(0, len(items), chunk):
        part = sorted(items[start : start + chunk], key=lambda e: len(e.ids))
        out += [part[i : i + size] for i in range(0, len(part), size)]
    rng.shuffle(out)
    return out


def tensors(
    batch: Sequence[EncodedExample], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    length = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), length), dtype=torch.long)
    labels = torch.full((len(batch), length), IGNORE, dtype=torch.long)
    for row, example in enumerate(batch):
        n = len(example.ids)
        ids[row, :n] = torch.tensor(example.ids)
        mask[row, :n] = 1
        labels[row, :n] = torch.tensor(example.labels)
    intents = torch.tensor([e.intent for e in batch], dtype=torch.long)
    return ids, mask, intents, labels


class Trainer:
    """Trains a `JointModel` on encoded examples."""

    def __init__(
        self,
        model: JointModel,
        settings: TrainSettings,
        maps: LabelMaps,
        tokenizer: WordPieceTokenizer,
        *,
        progress: bool | None = None,
        out: TextIO = sys.stderr,
    ) -> None:
        self.model = model
        self.settings = settings
        self.maps = maps
        self.tokenizer = tokenizer
        self.progress = out.isatty() if progress is None else progress
        self.out = out
        self._intent_loss = nn.CrossEntropyLoss()
        self._entity_loss = nn.CrossEntropyLoss(ignore_index=IGNORE)

    def _loss(self, batch: Sequence[EncodedExample]) -> torch.Tensor:
        ids, mask, intents, labels = tensors(batch, self.tokenizer.pad_id)
        intent_logits, entity_logits = self.model(ids, mask)
        loss = self._intent_loss(intent_logits, intents)
        if (labels != IGNORE).any():
            entity = self._entity_loss(
                entity_logits.reshape(-1, entity_logits.shape[-1]), labels.reshape(-1)
            )
            loss = loss + self.settings.entity_loss_weight * entity
        result: torch.Tensor = loss
        return result

    def fit(
        self,
        train: Sequence[EncodedExample],
        held_out: Sequence[EncodedExample],
        held_out_texts: Sequence[str] = (),
        held_out_gold: Sequence[set[tuple[Any, ...]]] = (),
    ) -> TrainSummary:
        """Train; keep the best epoch's weights in `self.model`; return the summary."""
        s = self.settings
        if s.threads:
            torch.set_num_threads(s.threads)
        seed_everything(s.seed)
        rng = random.Random(s.seed)
        steps_per_epoch = math.ceil(len(train) / s.batch_size)
        total = steps_per_epoch * s.epochs
        warmup = max(1, int(total * s.warmup_fraction))
        optimizer = torch.optim.AdamW(
            self.model.parameter_groups(s.learning_rate, s.head_learning_rate, s.weight_decay)
        )
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: min(
                (step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup))
            ),
        )
        history: list[EpochScore] = []
        best_state: dict[str, torch.Tensor] | None = None
        best_index = 0
        stale = 0
        steps = 0
        started = time.perf_counter()
        stopped_early = False
        for epoch in range(1, s.epochs + 1):
            self.model.train()
            running = 0.0
            bar = self._bar(steps_per_epoch, f"epoch {epoch}/{s.epochs}")
            for count, batch in enumerate(batches(train, s.batch_size, rng), start=1):
                loss = self._loss(batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                steps += 1
                running += float(loss.detach())
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{running / count:.3f}", refresh=False)
            if bar is not None:
                bar.close()
            score = EpochScore(epoch, running / max(1, steps_per_epoch))
            if held_out:
                self._evaluate(score, held_out, held_out_texts, held_out_gold)
            history.append(score)
            self._report(score)
            if not held_out or best_state is None or self._better(score, history[best_index]):
                best_index = epoch - 1
                best_state = copy.deepcopy(self.model.state_dict()) if held_out else None
                stale = 0
            else:
                stale += 1
                if stale >= s.patience:
                    stopped_early = epoch < s.epochs
                    break
        if best_state is not None:
            self.model.load_state_dict(best_state)
        self.model.eval()
        return TrainSummary(
            train_examples=len(train),
            held_out_examples=len(held_out),
            intents=len(self.maps.intents),
            entity_labels=len(self.maps.entity_labels),
            epochs_run=len(history),
            best_epoch=best_index + 1,
            wall_s=time.perf_counter() - started,
            steps=steps,
            history=history,
            stopped_early=stopped_early,
        )

    @staticmethod
    def _better(score: EpochScore, best: EpochScore) -> bool:
        if not math.isclose(score.score, best.score, abs_tol=1e-9):
            return score.score > best.score
        return (score.loss or 0.0) < (best.loss or 0.0)

    def _bar(self, total: int, desc: str) -> Any:
        if not self.progress:
            return None
        from tqdm import tqdm  # type: ignore[import-untyped]

        return tqdm(total=total, desc=desc, unit="batch", file=self.out, leave=False)

    def _report(self, score: EpochScore) -> None:
        parts = [f"epoch {score.epoch}: train loss {score.train_loss:.4f}"]
        if score.loss is not None:
            parts.append(f"held-out loss {score.loss:.4f}")
        if score.intent_accuracy is not None:
            parts.append(f"intent accuracy {score.intent_accuracy:.1%}")
        if score.entity_f1 is not None:
            parts.append(f"entity F1 {score.entity_f1:.1%}")
        print(", ".join(parts), file=self.out, flush=True)

    @torch.no_grad()
    def _evaluate(
        self,
        score: EpochScore,
        held_out: Sequence[EncodedExample],
        texts: Sequence[str],
        gold: Sequence[set[tuple[Any, ...]]],
    ) -> None:
        self.model.eval()
        losses, correct = [], 0
        true_pos = predicted = expected = 0
        encodings = self.tokenizer.encode(texts) if texts else []
        for start in range(0, len(held_out), 64):
            batch = held_out[start : start + 64]
            losses.append(float(self._loss(batch)) * len(batch))
            ids, mask, intents, _ = tensors(batch, self.tokenizer.pad_id)
            intent_logits, entity_logits = self.model(ids, mask)
            correct += int((intent_logits.argmax(-1) == intents).sum())
            if not gold:
                continue
            probs = softmax(entity_logits.numpy(), axis=-1)
            for row in range(len(batch)):
                index = start + row
                encoded = encodings[index]
                spans = decode_entities(
                    texts[index],
                    encoded.offsets,
                    probs[row, : len(encoded.offsets)],
                    self.maps.entity_labels,
                )
                found = {(e.entity, e.role, e.group, e.start, e.end) for e in spans}
                true_pos += len(found & gold[index])
                predicted += len(found)
                expected += len(gold[index])
        score.loss = sum(losses) / len(held_out)
        score.intent_accuracy = correct / len(held_out)
        if gold and expected:
            score.entity_f1 = 2 * true_pos / (predicted + expected) if predicted else 0.0
