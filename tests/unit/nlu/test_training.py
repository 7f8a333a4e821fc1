"""Training with torch, end to end on a small DistilBERT built from a config: `parley train`
writes an archive the interpreter serves; unchanged data is not retrained."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from services.cli import main
from services.nlu.archive import ModelArchive, archives
from services.nlu.inference import OnnxRuntimeModel
from services.nlu.interpreter import NluInterpreter, ParseRequest
from services.nlu.onnx_model import ModelSignature
from services.nlu.parse_data import ParseOptions
from services.nlu.training.settings import TrainSettings, TrainSettingsError
from tests.support.nlu_models import write_project


def test_archive_holds_model_tokenizer_labels_metadata(tiny_archive: Path) -> None:
    with tarfile.open(tiny_archive) as tar:
        names = set(tar.getnames())
    assert names == {
        "metadata.json",
        "nlu/model.onnx",
        "nlu/model.int8.onnx",
        "nlu/tokenizer.json",
        "nlu/labels.json",
        "nlu/rules.json",
        "core/ensemble.json",
    }
    archive = ModelArchive.read(tiny_archive)
    assert archive.nlu.intents == ("book_flight", "goodbye", "greet")
    assert archive.nlu.entity_labels == ("O", "B-city", "I-city")
    meta = archive.metadata["nlu"]
    assert meta["encoder"]["model_type"] == "distilbert"
    assert len(meta["fingerprint"]) == 64
    assert meta["summary"]["epochs_run"] >= 1
    signature = ModelSignature.of_onnx(archive.nlu.onnx)
    signature.check_joint()
    assert signature.output("intent").dims[-1] == 3
    assert archive.core is not None  # the tiny project's RulePolicy, with no rules to learn
    assert archive.core.metadata["policies"] == ["RulePolicy"]
    assert len(archive.core.fingerprint) == 64


async def test_trained_model_parses_like_rasa(tiny_archive: Path) -> None:
    archive = ModelArchive.read(tiny_archive)
    interpreter = NluInterpreter.in_process(
        archive.nlu,
        ParseOptions.from_rules(archive.nlu.rules),
        known_intents=archive.nlu.domain_intents,
    )
    texts = ["hello", "book a flight to berlin", "bye bye", "fly to Rome 12345"]
    parsed = await interpreter.parse(
        [ParseRequest(t, message_id=str(i)) for i, t in enumerate(texts)]
    )
    assert [p["intent"]["name"] for p in parsed] == [
        "greet",
        "book_flight",
        "goodbye",
        "book_flight",
    ]
    assert set(parsed[0]) == {
        "text",
        "intent",
        "entities",
        "intent_ranking",
        "message_id",
        "metadata",
    }
    assert parsed[0]["message_id"] == "0"
    assert len(parsed[0]["intent_ranking"]) == 3
    berlin = [e for e in parsed[1]["entities"] if e["entity"] == "city"]
    assert berlin
    assert (berlin[0]["start"], berlin[0]["end"]) == (17, 23)
    # the synonym maps the surface form to its value and says so
    assert berlin[0]["value"] == "Berlin"
    assert berlin[0]["processors"] == ["EntitySynonymMapper"]
    assert berlin[0]["extractor"] == "DIETClassifier"
    assert 0.0 < berlin[0]["confidence_entity"] <= 1.0
    zipcodes = [e for e in parsed[3]["entities"] if e["entity"] == "zipcode"]
    assert zipcodes == []  # `zipcode` is not an entity of any example: Rasa ignores the regex
    # an intent message skips the model, including a domain intent without examples
    external = await interpreter.parse([ParseRequest('/EXTERNAL_wake_up{"city": "Oslo"}')])
    assert external[0]["intent"] == {"name": "EXTERNAL_wake_up", "confidence": 1.0}
    assert external[0]["entities"][0]["value"] == "Oslo"


def test_onnx_export_matches_inputs_of_any_length(tiny_archive: Path) -> None:
    archive = ModelArchive.read(tiny_archive)
    model = OnnxRuntimeModel(archive.nlu.onnx)
    for batch, length in ((1, 3), (4, 17), (2, 32)):
        ids = np.full((batch, length), 1000, dtype=np.int64)
        intent, entities = model.infer_sync(ids, np.ones_like(ids))
        assert intent.shape == (batch, 3)
        assert entities.shape == (batch, length, 3)


def test_unchanged_data_is_not_retrained(
    tiny_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = archives(tiny_project / "models")
    assert main(["train", "--project", str(tiny_project), "--no-progress"]) == 0
    assert "not retrained" in capsys.readouterr().out
    assert archives(tiny_project / "models") == before


def test_changed_data_retrains(
    tmp_path: Path, tiny_encoder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_project(tmp_path, tiny_encoder, epochs=1)
    assert main(["train", "--project", str(root), "--no-progress"]) == 0
    first = archives(root / "models")
    extra = "- intent: thanks\n  examples: |\n    - thank you\n    - thanks\n    - cheers\n"
    write_project(tmp_path, tiny_encoder, epochs=1, extra_nlu=extra)
    assert main(["train", "--project", str(root), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out
    assert "held-out intent accuracy" in out
    after = archives(root / "models")
    assert len(after) == 2
    assert after[0] == first[0]
    fingerprints = {ModelArchive.read(p).nlu.fingerprint for p in after}
    assert len(fingerprints) == 2
    assert "thanks" in ModelArchive.read(after[1]).nlu.intents


def test_training_is_reproducible_with_a_fixed_seed(tmp_path: Path, tiny_encoder: Path) -> None:
    from schemas.project.loader import load_project
    from services.nlu.training.train import train_nlu

    project = load_project(write_project(tmp_path, tiny_encoder, epochs=2))
    settings = TrainSettings.from_config(project.config)
    first = train_nlu(project.nlu.examples, settings, tiny_encoder, progress=False)
    second = train_nlu(project.nlu.examples, settings, tiny_encoder, progress=False)
    ids = np.array([[101, 7592, 102]], dtype=np.int64)
    a = OnnxRuntimeModel(first.onnx).infer_sync(ids, np.ones_like(ids))
    b = OnnxRuntimeModel(second.onnx).infer_sync(ids, np.ones_like(ids))
    np.testing.assert_allclose(a[0], b[0], atol=1e-5)
    assert first.summary.history[-1].train_loss == pytest.approx(
        second.summary.history[-1].train_loss
    )


def test_settings_from_config_reject_bad_options() -> None:
    from schemas.project.config import Component, Config
    from schemas.project.problems import Source

    def config(**options: object) -> Config:
        return Config(
            pipeline=(Component("ParleyTransformer", Source(Path("config.yml"), 3), dict(options)),)
        )

    assert TrainSettings.from_config(config(epochs=3, learning_rate=1)).learning_rate == 1.0
    with pytest.raises(TrainSettingsError, match="unknown option"):
        TrainSettings.from_config(config(epoch=3))
    with pytest.raises(TrainSettingsError, match="epochs should be a int"):
        TrainSettings.from_config(config(epochs="3"))
    with pytest.raises(TrainSettingsError, match=r"max_length in 8\.\.512"):
        TrainSettings.from_config(config(max_length=4))
    with pytest.raises(TrainSettingsError, match="not a Hugging Face model directory"):
        TrainSettings.from_config(config(encoder="/nonexistent")).encoder_dir()


def test_train_reports_project_errors_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "domain.yml").write_text("version: '3.1'\nintents: [greet\n")
    assert main(["train", "--project", str(tmp_path)]) == 1
    assert "domain.yml:2" in capsys.readouterr().err


def test_export_triton_takes_an_archive_or_a_models_folder(
    tiny_project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = tiny_project / "models"
    out = tmp_path / "repo"
    assert main(["export", "triton", "--model", str(models), "--out", str(out)]) == 0
    exported = (out / "parley_nlu" / "1" / "model.onnx").read_bytes()
    assert exported == ModelArchive.read(archives(models)[-1]).nlu.onnx_int8  # KIND_CPU
    assert main(["export", "triton", "--model", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert "no such model archive" in capsys.readouterr().err


def test_parley_test_nlu_writes_reports_and_pictures(
    tiny_project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results"
    assert main(["test", "nlu", "--project", str(tiny_project), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "intent accuracy" in printed.lower()
    for name in ("intent_report.json", "entity_report.json", "errors.json", "summary.txt"):
        assert (out / name).is_file(), name
    for name in ("intent_confusion_matrix.png", "intent_histogram.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "intent_report.json").read_text())
    assert set(report) >= {"greet", "goodbye", "book_flight", "accuracy", "macro avg"}
    assert report["accuracy"] >= 0.9  # trained and scored on the same 26 examples
    assert report["greet"]["support"] == 8
    entity = json.loads((out / "entity_report.json").read_text())
    assert entity["city"]["support"] == 10
    # a test split given as a file, and a missing model named plainly
    split = tmp_path / "split.yml"
    split.write_text('version: "3.1"\nnlu:\n- intent: greet\n  examples: |\n    - hello there\n')
    args = ["test", "nlu", "--project", str(tiny_project), "--nlu", str(split), "--out", str(out)]
    assert main(args) == 0
    assert json.loads((out / "intent_report.json").read_text())["greet"]["support"] == 1
    assert main(["test", "nlu", "--project", str(tmp_path), "--out", str(out)]) == 2
    assert "no such model archive" in capsys.readouterr().err


async def test_the_int8_model_is_smaller_and_parses_alike(tiny_archive: Path) -> None:
    nlu = ModelArchive.read(tiny_archive).nlu
    assert nlu.onnx_int8 is not None
    assert nlu.model_bytes("int8") == nlu.onnx_int8
    assert nlu.model_bytes("fp32") == nlu.onnx
    assert len(nlu.onnx_int8) < len(nlu.onnx)
    ModelSignature.of_onnx(nlu.onnx_int8).check_joint()
    texts = [ParseRequest(t) for t in ("hello", "book a flight to berlin", "bye bye")]
    names = []
    for precision in ("int8", "fp32"):
        interpreter = NluInterpreter.in_process(nlu, precision=precision)
        names.append([p["intent"]["name"] for p in await interpreter.parse(texts)])
    assert names[0] == names[1] == ["greet", "book_flight", "goodbye"]


def test_export_picks_int8_for_cpu_and_fp32_for_gpu(tiny_project: Path, tmp_path: Path) -> None:
    models = tiny_project / "models"
    nlu = ModelArchive.read(archives(models)[-1]).nlu
    for kind, expected in (("KIND_CPU", nlu.onnx_int8), ("KIND_GPU", nlu.onnx)):
        out = tmp_path / kind
        args = ["export", "triton", "--model", str(models), "--out", str(out)]
        assert main([*args, "--instance-kind", kind]) == 0
        assert (out / "parley_nlu" / "1" / "model.onnx").read_bytes() == expected


def test_archives_of_the_same_second_keep_their_order(tmp_path: Path) -> None:
    for name in ("20261125-033539-2", "20261125-033539", "20261125-033540", "20261125-033539-10"):
        (tmp_path / f"{name}.tar.gz").write_bytes(b"")
    assert [p.name.removesuffix(".tar.gz") for p in archives(tmp_path)] == [
        "20261125-033539",
        "20261125-033539-2",
        "20261125-033539-10",
        "20261125-033540",
    ]
