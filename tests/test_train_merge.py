"""Model merging on tiny state dicts, against values worked out by hand; then on two tiny BERTs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vecbox.errors import InvalidInputError  # noqa: E402
from vecbox.train.merge import linear, merge_state_dicts, slerp, task_arithmetic, ties  # noqa: E402


def sd(*values, ids=(0, 1)):
    return {"w": torch.tensor(values, dtype=torch.float32), "position_ids": torch.tensor(ids)}


def close(a, b):
    np.testing.assert_allclose(a["w"].numpy(), np.asarray(b, dtype=np.float32), atol=1e-6)


def test_linear_endpoints_and_mean():
    a, b = sd(1.0, 2.0, -1.0), sd(3.0, 0.0, 1.0)
    close(linear([a, b], [1, 0]), [1, 2, -1])
    close(linear([a, b], [0, 1]), [3, 0, 1])
    close(linear([a, b]), [2, 1, 0])
    assert linear([a, b])["position_ids"].tolist() == [0, 1]  # integer buffers are copied, not averaged


def test_slerp_endpoints_and_the_arc():
    a, b = sd(1.0, 0.0, 0.0), sd(0.0, 2.0, 0.0)
    close(slerp(a, b, 0.0), [1, 0, 0])
    close(slerp(a, b, 1.0), [0, 2, 0])
    # orthogonal: omega = pi/2, so the mid point is sin(pi/4) * (a + b) / sin(pi/2)
    close(slerp(a, b, 0.5), [math.sqrt(0.5), 2 * math.sqrt(0.5), 0])
    u, v = sd(1.0, 0.0), sd(0.0, 1.0)
    m = slerp(u, v, 1 / 3)["w"]
    assert float(m.norm()) == pytest.approx(1.0, abs=1e-6)  # stays on the unit circle, unlike the line
    assert math.atan2(float(m[1]), float(m[0])) == pytest.approx(math.pi / 6, abs=1e-6)  # a third of the angle
    close(slerp(sd(1.0, 1.0), sd(2.0, 2.0), 0.5), [1.5, 1.5])  # parallel: linear


def test_task_arithmetic_adds_task_vectors():
    base, a, b = sd(1.0, 1.0), sd(2.0, 1.0), sd(1.0, 3.0)
    close(task_arithmetic(base, [a, b]), [2, 3])
    close(task_arithmetic(base, [a, b], scaling=0.5), [1.5, 2])


# task vectors (base = 0) chosen so that the sign election differs from the plain mean
T1, T2, T3 = (1.0, -2.0, 3.0, 0.1), (-3.0, 1.0, 1.5, 0.2), (1.0, 0.5, -1.0, -0.05)


def test_ties_elects_signs_and_averages_the_agreeing():
    base = sd(0.0, 0.0, 0.0, 0.0)
    models = [sd(*T1), sd(*T2), sd(*T3)]
    # density 1 (no trim): signs of the sums (-1, -0.5, 3.5, 0.25) = (-, -, +, +);
    # means of the agreeing entries: (-3), (-2), (3, 1.5), (0.1, 0.2)
    close(ties(base, models, density=1.0), [-3, -2, 2.25, 0.15])
    # density 0.5 keeps each task vector's two largest: (0,-2,3,0), (-3,0,1.5,0), (1,0,-1,0);
    # sums (-2, -2, 3.5, 0): the last parameter has no survivor and keeps the base value
    close(ties(base, models, density=0.5), [-3, -2, 2.25, 0])
    close(task_arithmetic(base, models, [1 / 3] * 3), np.mean([T1, T2, T3], axis=0))  # what TIES avoids
    close(ties(sd(1.0, 1.0, 1.0, 1.0), [sd(*(1 + x for x in t)) for t in (T1, T2, T3)], density=1.0),
          [-2, -1, 3.25, 1.15])  # the same around a non-zero base


def test_merge_refuses_mismatched_models_and_bad_options():
    with pytest.raises(InvalidInputError, match="architecture"):
        linear([sd(1.0), {"v": torch.ones(1), "position_ids": torch.tensor([0, 1])}])
    with pytest.raises(InvalidInputError, match="shape"):
        linear([sd(1.0, 2.0), sd(1.0)])
    with pytest.raises(InvalidInputError, match="exactly two"):
        merge_state_dicts("slerp", [sd(1.0), sd(1.0), sd(1.0)])
    with pytest.raises(InvalidInputError, match="base model"):
        merge_state_dicts("ties", [sd(1.0), sd(2.0)])
    with pytest.raises(InvalidInputError, match="method must be"):
        merge_state_dicts("dare", [sd(1.0)])
    with pytest.raises(InvalidInputError, match="density"):
        ties(sd(0.0), [sd(1.0)], density=0)


def test_merge_models_writes_a_loadable_safetensors_model(tmp_path):
    pytest.importorskip("sentence_transformers")
    from safetensors.torch import load_file

    from vecbox.encoders.text import TextEncoder
    from vecbox.train.merge import merge_models
    from vecbox.train.tiny import make_tiny_model

    a = make_tiny_model(tmp_path / "a", layers=2, hidden=16, seed=1)
    b = make_tiny_model(tmp_path / "b", layers=2, hidden=16, seed=2)
    out = merge_models([a, b], tmp_path / "m", method="slerp", t=0.0)
    assert (out / "model.safetensors").is_file() and not list(out.rglob("*.bin")) and not list(out.rglob("*.pt"))
    assert "slerp" in (out / "README.md").read_text()
    np.testing.assert_allclose(TextEncoder(str(out)).encode(["read a file"]), TextEncoder(str(a)).encode(["read a file"]),
                               atol=1e-6)  # t = 0 is the first model
    mid = merge_models([a, b], tmp_path / "lin", method="linear")
    wa, wb, wm = (load_file(p / "model.safetensors") for p in (a, b, mid))
    k = next(k for k in wm if k.endswith("query.weight"))
    np.testing.assert_allclose(wm[k].numpy(), (wa[k].numpy() + wb[k].numpy()) / 2, atol=1e-6)


def test_self_positioning_learns_to_move_toward_the_task_and_away_from_its_opposite(tmp_path):
    """Models: one tuned on the probe pairs (task vector tau) and its opposite (base - tau). From the
    initial weights (1/2, 1/2) - which give the base itself - the learned weights must favour the tuned
    model, and the merge must score a lower probe loss than the base."""
    pytest.importorskip("sentence_transformers")
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from vecbox.train.fit import TrainSettings, train
    from vecbox.train.merge import merge_models
    from vecbox.train.pairs import Pair
    from vecbox.train.positioning import learn_coefficients, probe_loss
    from vecbox.train.tiny import make_tiny_model

    texts = [("read a csv file", "csv reader of rows and lines"), ("hash a string", "sha256 digest of bytes"),
             ("sort a list", "sort numbers in a list"), ("open a socket", "network socket server"),
             ("parse json", "json text to a dict"), ("zip files", "compress files into an archive"),
             ("gene expression", "expression of genes in human cells"), ("drug risk", "risk of a drug for patients")]
    pairs = [Pair(a, p) for a, p in texts]
    base = make_tiny_model(tmp_path / "base", layers=2, hidden=16, seed=1)
    tuned = train(base, pairs, tmp_path / "tuned", TrainSettings(loss="mnrl", batch_size=4, epochs=3, lr=5e-3,
                                                                  warmup=0.0, max_seq_length=32)).out
    st = SentenceTransformer(str(base), device="cpu", local_files_only=True)
    base_sd = {k: v.clone() for k, v in st.state_dict().items()}
    tuned_sd = SentenceTransformer(str(tuned), device="cpu", local_files_only=True).state_dict()
    anti_sd = {k: (2 * base_sd[k] - tuned_sd[k]) if torch.is_floating_point(base_sd[k]) else base_sd[k]
               for k in base_sd}
    alpha, curve = learn_coefficients(st, base_sd, [tuned_sd, anti_sd], pairs, steps=8, lr=0.1, batch_size=8)
    assert alpha[0] > 0.5 > alpha[1]

    mnrl = MultipleNegativesRankingLoss(st)
    names = [k for k in base_sd if torch.is_floating_point(base_sd[k])]
    merged = {k: base_sd[k] + alpha[0] * (tuned_sd[k] - base_sd[k]) + alpha[1] * (anti_sd[k] - base_sd[k])
              for k in names}
    with torch.no_grad():
        at_base = float(probe_loss(st, {k: base_sd[k] for k in names}, pairs, mnrl))
        at_merge = float(probe_loss(st, merged, pairs, mnrl))
    assert curve[0] == pytest.approx(at_base, rel=1e-4)  # the start is the base model
    assert at_merge < at_base

    anti_dir = tmp_path / "anti"
    st.load_state_dict(anti_sd)
    st.save(str(anti_dir))
    out = merge_models([tuned, anti_dir], tmp_path / "sp", method="self_positioning", base=base, probe=pairs,
                       steps=5)
    card = json.loads((out / "vecbox_train.json").read_text())
    learned = card["Merge"]["learned"]["weights"]
    assert learned[0] > learned[1]
    with pytest.raises(InvalidInputError, match="probe pairs"):
        merge_models([tuned, anti_dir], tmp_path / "x", method="self_positioning", base=base)
