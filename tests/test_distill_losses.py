"""Distillation losses against hand-worked examples, the teacher-score scale, and one real training step."""

from __future__ import annotations

import math

import pytest
import torch

from rtune.train.distill_losses import DISTILL_LOSSES, build_distill_loss, teacher_logits

# Unit vectors: cosine(Q, P) = 1, cosine(Q, N1) = 0, cosine(Q, N2) = -1.
Q, P, N1, N2 = (torch.tensor([[x, y]], dtype=torch.float32) for x, y in [(1, 0), (1, 0), (0, 1), (-1, 0)])


@pytest.fixture(scope="module")
def student(tiny_model):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(tiny_model), device="cpu")  # cosine similarity


def test_registry_names_and_bad_names(student):
    assert list(DISTILL_LOSSES) == ["kl", "margin_mse", "mean_margin"]
    with pytest.raises(ValueError, match="valid: kl, margin_mse, mean_margin"):
        build_distill_loss("listnet", student)
    with pytest.raises(ValueError, match="unknown parameter 'temperature' for loss 'kl'; valid: teacher_temperature, scale"):
        build_distill_loss("kl", student, temperature=2.0)


def test_kl_hand_worked(student):
    # scale 1: student logits = cosines [1, 0] -> log-softmax [1 - log(1+e), -log(1+e)] = [-0.313262, -1.313262].
    # teacher logits [2, 0], T = 1 -> softmax [e^2/(e^2+1), 1/(e^2+1)] = [0.880797, 0.119203].
    # KL = 0.880797 * (ln 0.880797 + 0.313262) + 0.119203 * (ln 0.119203 + 1.313262)
    #    = 0.880797 * 0.186334 + 0.119203 * (-0.813666) = 0.164122 - 0.096991 = 0.067131
    loss = build_distill_loss("kl", student, scale=1.0)
    assert loss.compute_loss_from_embeddings([Q, P, N1], torch.tensor([[2.0, 0.0]])).item() == pytest.approx(0.067131, abs=1e-5)
    # teacher temperature 2: softmax([2, 0] / 2) = softmax([1, 0]) = the student's distribution -> KL = 0
    warm = build_distill_loss("kl", student, scale=1.0, teacher_temperature=2.0)
    assert warm.compute_loss_from_embeddings([Q, P, N1], torch.tensor([[2.0, 0.0]])).item() == pytest.approx(0.0, abs=1e-6)
    # scale 2 (student temperature 0.5): student logits [2, 0] = the teacher's -> KL = 0, and no 1/T^2 factor anywhere
    sharp = build_distill_loss("kl", student, scale=2.0)
    assert sharp.compute_loss_from_embeddings([Q, P, N1], torch.tensor([[2.0, 0.0]])).item() == pytest.approx(0.0, abs=1e-6)


def test_kl_with_the_contrastive_term_hand_worked(student):
    # one row, scale 1: in-batch candidates are P (cos 1) and N1 (cos 0): -log softmax([1, 0])[0] = ln(1 + e^-1) = 0.313262
    # total = KL 0.067131 + 0.5 * 0.313262 = 0.223762
    loss = build_distill_loss("kl", student, scale=1.0, contrastive_weight=0.5)
    assert loss.compute_loss_from_embeddings([Q, P, N1], torch.tensor([[2.0, 0.0]])).item() == pytest.approx(0.223762, abs=1e-5)


def test_teacher_probabilities_become_logits(student):
    # p = 0.880797 is sigmoid(2), p = 0.5 is sigmoid(0): the same teacher as logits [2, 0] -> the same KL 0.067131
    probs = torch.tensor([[1 / (1 + math.exp(-2)), 0.5]])
    assert torch.allclose(teacher_logits(probs, "probabilities"), torch.tensor([[2.0, 0.0]]), atol=1e-5)
    loss = build_distill_loss("kl", student, scale=1.0, teacher_scores="probabilities")
    assert loss.compute_loss_from_embeddings([Q, P, N1], probs).item() == pytest.approx(0.067131, abs=1e-5)
    # read as logits instead, they give the flatter target softmax([0.880797, 0.5]) = [0.594059, 0.405941]:
    # KL = 0.594059 * (ln 0.594059 + 0.313262) + 0.405941 * (ln 0.405941 + 1.313262)
    #    = 0.594059 * (-0.207515) + 0.405941 * 0.411688 = -0.123276 + 0.167121 = 0.043845
    raw = build_distill_loss("kl", student, scale=1.0)
    assert raw.compute_loss_from_embeddings([Q, P, N1], probs).item() == pytest.approx(0.043845, abs=1e-5)
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        teacher_logits(torch.tensor([[3.0, 0.0]]), "probabilities")
    with pytest.raises(ValueError, match="valid: logits, probabilities"):
        build_distill_loss("margin_mse", student, teacher_scores="sigmoid")


def test_margin_mse_hand_worked(student):
    # student cosines: P 1, N1 0, N2 -1 -> margins [1 - 0, 1 - (-1)] = [1, 2]
    # teacher scores [3, 1, 2] -> margins [3 - 1, 3 - 2] = [2, 1]; MSE = ((1 - 2)^2 + (2 - 1)^2) / 2 = 1.0
    labels = torch.tensor([[3.0, 1.0, 2.0]])
    assert build_distill_loss("margin_mse", student).compute_loss_from_embeddings([Q, P, N1, N2], labels).item() == pytest.approx(1.0)
    # scale 2: student margins [2, 4] -> ((2 - 2)^2 + (4 - 1)^2) / 2 = 4.5
    scaled = build_distill_loss("margin_mse", student, scale=2.0)
    assert scaled.compute_loss_from_embeddings([Q, P, N1, N2], labels).item() == pytest.approx(4.5)


def test_mean_margin_hand_worked(student):
    # row 1: s(pos) = 1, negatives [0, -1] -> mean -0.5 -> gap 1.5
    # row 2: query (1, 0), positive (0, 1) -> 0, negatives (1, 0) -> 1 and (0, 1) -> 0: mean 0.5 -> gap -0.5
    q = torch.cat([Q, Q])
    columns = [q, torch.cat([P, N1]), torch.cat([N1, P]), torch.cat([N2, N1])]
    # margin 1: rows max(0, 1 - 1.5) = 0 and max(0, 1 + 0.5) = 1.5 -> mean 0.75
    assert build_distill_loss("mean_margin", student, margin=1.0).compute_loss_from_embeddings(columns).item() == pytest.approx(0.75)
    # margin 2: 0.5 and 2.5 -> 1.5
    assert build_distill_loss("mean_margin", student, margin=2.0).compute_loss_from_embeddings(columns).item() == pytest.approx(1.5)


@pytest.mark.parametrize("name", list(DISTILL_LOSSES))
def test_one_training_step_with_the_documented_row_format(name, tiny_model, tmp_path):
    """Rows: anchor, positive, negative_1, negative_2 and `label` = [T(q,pos), T(q,neg_1), T(q,neg_2)] per row."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    model = SentenceTransformer(str(tiny_model), device="cpu")
    before = [p.detach().clone() for p in model.parameters()]
    rows = {"anchor": ["What is the capital of France?", "Where did the cat sit?"],
            "positive": ["Paris is the capital and largest city of France.", "The cat sat on the mat."],
            "negative_1": ["Berlin is the capital of Germany.", "Dogs chase cats around the garden."],
            "negative_2": ["The Nile is the longest river in Africa.", "Python is a programming language."],
            "label": [[4.0, 1.0, -2.0], [3.0, 0.5, -1.0]]}
    args = SentenceTransformerTrainingArguments(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=2,
                                                learning_rate=1e-2, report_to="none", use_cpu=True, save_strategy="no")
    loss = build_distill_loss(name, model)
    SentenceTransformerTrainer(model=model, args=args, train_dataset=Dataset.from_dict(rows), loss=loss).train()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
