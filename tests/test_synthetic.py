"""The planted benchmark model: its hidden states, SAEs and ground truth, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from semot.synthetic.planted import (
    PlantedConfig,
    collect_planted,
    make_planted_model,
    save_planted_run,
)

SMALL = {"n_layers": 3, "d_model": 32, "n_atoms": 60, "n_families": 8, "n_shape_pairs": 3}


@pytest.fixture(scope="module")
def small():
    return make_planted_model(**SMALL)


def test_same_seed_same_model_and_stream(small):
    again = make_planted_model(**SMALL)
    for a, b in zip(small.directions, again.directions, strict=True):
        np.testing.assert_array_equal(a, b)
    x = next(small.tokens(256, seed=5))
    y = next(again.tokens(256, seed=5))
    np.testing.assert_array_equal(x.hidden[2], y.hidden[2])
    z = next(small.tokens(256, seed=6))
    assert not np.array_equal(x.hidden[0], z.hidden[0])


def test_hidden_states_follow_the_formula():
    m = make_planted_model(**SMALL, noise=0.0)
    cfg = m.config
    b = next(m.tokens(128, seed=1, batch_tokens=128))
    for t in (0, 7, 50, 127):
        on = b.atom_token == t
        atoms, mags, modes = b.atom_id[on], b.atom_mag[on], b.atom_mode[on]
        for layer in range(cfg.n_layers):
            want = np.zeros(cfg.d_model)
            for c, members in enumerate(m.concepts[layer]):
                mag = sum(g for a, g in zip(atoms, mags, strict=True) if a in set(members))
                want += mag * m.directions[layer][c]
            for mode in modes:
                want += m.rotations[layer] @ m.mode_vectors[mode]
            np.testing.assert_allclose(b.hidden[layer][t], want, atol=1e-9)


def test_directions_drift_with_layer_distance(small):
    # The same concept's direction moves further away the more layers apart.
    cos = []
    for tl in (1, 2):
        src, tgt = small.feature_atoms(0), small.feature_atoms(tl)
        same = [(s, t) for s in range(len(src)) for t in range(len(tgt)) if src[s] == tgt[t]]
        d0, dt = small.saes[0].W_dec, small.saes[tl].W_dec
        c = [d0[s] @ dt[t] / np.linalg.norm(d0[s]) / np.linalg.norm(dt[t]) for s, t in same]
        cos.append(np.mean(c))
    assert cos[0] > cos[1] + 0.05


def test_truth_is_atom_overlap(small):
    for tl in (1, 2):
        truth = small.truth(0, tl)
        src, tgt = small.feature_atoms(0), small.feature_atoms(tl)
        for s, atoms in enumerate(src):
            brute = {t for t, ta in enumerate(tgt) if atoms & ta}
            assert truth[s] == brute


def test_encode_is_jumprelu(small):
    sae = small.saes[1]
    h = np.random.default_rng(0).normal(size=(20, small.config.d_model))
    pre = h @ sae.W_enc + sae.b_enc
    got = sae.encode(h)
    for i in range(20):
        for f in range(sae.W_enc.shape[1]):
            want = pre[i, f] if pre[i, f] > sae.threshold[f] else 0.0
            assert got[i, f] == want


def test_collected_points_are_reference_hidden_states(small):
    fds, acts = collect_planted(
        small, [0, 2], n_tokens=2048, samples_per_feature=8, reference_layer=1, keep_activations=300
    )
    h_ref = np.concatenate([b.hidden[1] for b in small.tokens(2048, seed=0)])
    h0 = np.concatenate([b.hidden[0] for b in small.tokens(2048, seed=0)])
    seq_len = small.config.seq_len
    fd = fds[0]
    checked = 0
    for f in range(len(fd)):
        pts, _ = fd.cloud(f)
        seq, pos = fd.provenance(f)
        np.testing.assert_array_equal(pts, h_ref[seq * seq_len + pos].astype(np.float32))
        checked += len(pts)
    assert checked > 100
    # Firing counts equal a brute-force count over the whole stream.
    counts = (small.saes[0].encode(h0) > 0).sum(0)
    np.testing.assert_array_equal(fd.firing_counts, counts)
    assert acts[2].shape == (300, small.n_features(2))


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="d_model"):
        make_planted_model(d_model=0)
    with pytest.raises(ValueError, match="split"):
        make_planted_model(PlantedConfig(split=0.9))
    m = make_planted_model(**SMALL)
    with pytest.raises(ValueError, match="layer 5"):
        collect_planted(m, [0, 5], n_tokens=100)


def test_saved_run_loads_back(small, tmp_path):
    from semot.collection.run import load_run

    fds, _ = collect_planted(small, [0, 1], n_tokens=1024, samples_per_feature=4)
    save_planted_run(fds, tmp_path / "run")
    back = load_run(tmp_path / "run")
    assert sorted(back) == ["layer0", "layer1"]
    np.testing.assert_array_equal(back["layer1"].firing_counts, fds[1].firing_counts)
