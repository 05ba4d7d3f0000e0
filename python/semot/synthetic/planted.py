"""Planted multi-layer toy model with known feature correspondences across layers.

A benchmark that every matching method can win or lose on. Tokens carry a few latent *atoms*
(Zipf-distributed frequencies). At each layer the atoms visible there are grouped into
*concepts*; concepts are what the layer's SAE features detect. From one layer to the next some
concepts split into children, some merge, some appear and some die, so a source feature can
have several true targets or none. The hidden state of a token at layer ``l`` is

    h_l = sum over active concepts C of m_C * D_l[C]  +  sum over active atoms a of ctx_l[mode(a)]
          + noise,

where ``m_C`` is the summed magnitude of C's active atoms, ``D_l`` a dictionary of unit concept
directions that drifts and rotates from layer to layer (so decoder vectors of one concept
differ more the further apart the layers are), and ``ctx_l`` the *context* vectors: each atom
fires in one of one or two context modes, drawn from modes shared by its *family* of related
atoms (so contexts overlap). A few *shape pairs* are planted on purpose: two weak concepts with
the same mean context, one firing in two modes ``c + u`` / ``c - u``, the other only at ``c``:
a first-moment (centroid) summary cannot tell them apart, a distance between distributions can.

Each layer's SAE has one feature per concept, in a random order, with a noisy encoder, a noisy
decoder, a per-layer activation scale and a JumpReLU threshold; interference between the
superposed concepts (more concepts than dimensions) makes features misfire.

Ground truth: a source feature's true targets at another layer are the target features whose
concepts share an atom with its concept (none when its atoms are invisible there).

Everything is numpy; :func:`collect_planted` runs the same streaming sampler as
:func:`semot.collect` (:class:`semot.FeatureSampler`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from semot.features.container import FeatureDistributions
from semot.features.runs import write_run_record
from semot.features.sampling import FeatureSampler, to_distributions

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

# Children of a split start this far (norm of the perturbation) from the parent's direction:
# cosine about 0.5, related but clearly distinct.
_CHILD_SPREAD = 1.8


@dataclass(frozen=True)
class PlantedConfig:
    """Knobs of the planted model (defaults: the ``semot demo`` size).

    Attributes
    ----------
    n_layers, d_model : int
        Layers and width of the hidden states.
    n_atoms : int
        Latent atoms; about ``n_atoms`` concepts per layer (more than ``d_model``: superposition).
    n_families : int
        Families of related atoms; a family's atoms draw their context modes from the family's
        three shared modes.
    atoms_per_token : float
        Mean number of active atoms per token (Poisson).
    zipf : float
        Exponent of the atom frequencies (frequency of the r-th most common atom ~ r^-zipf).
    drift : float
        Per-layer random drift of each concept direction (relative to its unit norm).
    rotation : float
        Per-layer rotation angle scale of the whole space (radians, spread over all planes).
    context_scale, mode_spread : float
        Norm of the family context modes, and of an atom's own offset from them.
    noise : float
        Standard deviation of the isotropic noise of the hidden states (per dimension x sqrt(d)).
    encoder_noise, decoder_noise : float
        Noise of the SAE encoder and decoder rows relative to the true directions.
    split, merge, birth, death : float
        Per-layer rates of concept events.
    n_shape_pairs : int
        Planted shape pairs (two concepts with equal mean contexts, different shapes).
    threshold : float
        JumpReLU threshold on the (unscaled) encoder projection.
    seq_len : int
        Positions per sequence of the token stream.
    seed : int
        Seed of the model (dictionaries, events, SAEs); token streams have their own seeds.
    """

    n_layers: int = 4
    d_model: int = 128
    n_atoms: int = 240
    n_families: int = 30
    atoms_per_token: float = 2.0
    zipf: float = 0.8
    drift: float = 0.45
    rotation: float = 0.6
    context_scale: float = 1.5
    mode_spread: float = 0.5
    noise: float = 0.35
    encoder_noise: float = 0.3
    decoder_noise: float = 0.15
    split: float = 0.05
    merge: float = 0.05
    birth: float = 0.04
    death: float = 0.04
    n_shape_pairs: int = 8
    threshold: float = 1.2
    seq_len: int = 64
    seed: int = 0


@dataclass
class PlantedSAE:
    """One layer's SAE: ``f = JumpReLU_threshold(h @ W_enc + b_enc)`` per feature."""

    W_enc: F64
    b_enc: F64
    W_dec: F64
    threshold: F64
    concept_of_feature: I64

    def encode(self, h: F64) -> F64:
        """Feature activations ``(T, F)`` of hidden states ``(T, d)``."""
        pre = h @ self.W_enc + self.b_enc
        out: F64 = np.where(pre > self.threshold, pre, 0.0)
        return out

    def state_dict(self) -> dict[str, F64]:
        """Parameters under sae-lens names (as semot.matching.baselines.sae_match reads them)."""
        return {
            "W_enc": self.W_enc,
            "b_enc": self.b_enc,
            "W_dec": self.W_dec,
            "threshold": self.threshold,
        }


@dataclass
class PlantedBatch:
    """A batch of ``T`` tokens of the planted model: their latent content and hidden states.

    Attributes
    ----------
    seq, pos : numpy.ndarray of int64, shape (T,)
        Sequence index and position of every token.
    hidden : list of numpy.ndarray, shape (T, d_model)
        Hidden states, one array per layer.
    atom_token, atom_id, atom_mag, atom_mode : numpy.ndarray
        One entry per (token, active atom): the token's row, the atom, its magnitude and the
        context mode it fires in.
    """

    seq: I64
    pos: I64
    hidden: list[F64]  # per layer, (T, d)
    atom_token: I64 = field(repr=False)  # one entry per (token, active atom)
    atom_id: I64 = field(repr=False)
    atom_mag: F64 = field(repr=False)
    atom_mode: I64 = field(repr=False)


@dataclass
class PlantedModel:
    """A planted multi-layer model, its SAEs and the true feature correspondences.

    Build with :func:`make_planted_model`.
    """

    config: PlantedConfig
    atom_freq: F64
    atom_scale: F64
    atom_modes: list[I64]  # context-mode ids each atom can fire in
    mode_vectors: F64  # (n_modes, d) at layer 0
    concepts: list[list[I64]]  # per layer, per concept: its atoms
    directions: list[F64]  # per layer, (n_concepts, d): unit directions at that layer
    rotations: list[F64]  # per layer, (d, d): layer-0 space -> layer space
    saes: list[PlantedSAE]
    shape_pairs: list[tuple[int, int]]  # atom ids (two-mode atom, one-mode atom)

    @property
    def n_layers(self) -> int:
        """Number of layers."""
        return self.config.n_layers

    def n_features(self, layer: int) -> int:
        """Features of the SAE at ``layer``."""
        return len(self.saes[layer].concept_of_feature)

    def feature_atoms(self, layer: int) -> list[set[int]]:
        """Return the atoms of every feature of ``layer`` (indexed by feature id)."""
        return [
            {int(a) for a in self.concepts[layer][c]} for c in self.saes[layer].concept_of_feature
        ]

    def truth(self, source_layer: int, target_layer: int) -> list[set[int]]:
        """Return the true targets of every source feature: target features sharing an atom.

        An empty set means "no match" (the concept's atoms are invisible at the target layer).
        """
        owner: dict[int, int] = {}
        for f, atoms in enumerate(self.feature_atoms(target_layer)):
            for a in atoms:
                owner[a] = f
        return [
            {owner[a] for a in atoms if a in owner} for atoms in self.feature_atoms(source_layer)
        ]

    def shape_pair_features(self, layer: int) -> list[tuple[int, int]]:
        """Feature ids of the planted shape pairs at ``layer`` (pairs still alive there)."""
        f_of_atom: dict[int, int] = {}
        for f, atoms in enumerate(self.feature_atoms(layer)):
            if len(atoms) == 1:
                f_of_atom[next(iter(atoms))] = f
        return [
            (f_of_atom[a], f_of_atom[b])
            for a, b in self.shape_pairs
            if a in f_of_atom and b in f_of_atom
        ]

    def tokens(self, n_tokens: int, seed: int, batch_tokens: int = 8192) -> Iterator[PlantedBatch]:
        """Stream ``n_tokens`` tokens (whole sequences of ``seq_len``) in batches.

        The stream depends only on ``seed`` and ``batch_tokens``: two streams with different
        seeds share no tokens.
        """
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, seed, 7])
        per = max(1, batch_tokens // cfg.seq_len)
        n_seq_total = -(-n_tokens // cfg.seq_len)
        p = self.atom_freq / self.atom_freq.sum()
        n_modes_of = np.array([len(m) for m in self.atom_modes])
        modes_flat = np.concatenate(self.atom_modes)
        mode_start = np.concatenate([[0], np.cumsum(n_modes_of)[:-1]])
        first = 0
        while first < n_seq_total:
            n_seq = min(per, n_seq_total - first)
            t = n_seq * cfg.seq_len
            counts = rng.poisson(cfg.atoms_per_token, t)
            tok = np.repeat(np.arange(t), counts)
            atom = rng.choice(len(p), size=tok.size, p=p)
            # One occurrence per (token, atom): a repeated atom adds nothing new.
            key = np.unique(tok * len(p) + atom)
            tok, atom = key // len(p), key % len(p)
            mag = rng.gamma(4.0, 0.5, tok.size) * self.atom_scale[atom]
            which = (rng.random(tok.size) * n_modes_of[atom]).astype(np.int64)
            mode = modes_flat[mode_start[atom] + which]
            ctx0 = np.zeros((t, cfg.d_model))
            np.add.at(ctx0, tok, self.mode_vectors[mode])
            noise = rng.normal(size=(cfg.n_layers, t, cfg.d_model)) * (
                cfg.noise / np.sqrt(cfg.d_model)
            )
            hidden = []
            for layer in range(cfg.n_layers):
                conc = self._concept_of_atom(layer)
                c = conc[atom]
                vis = c >= 0
                m = np.zeros((t, len(self.concepts[layer])))
                np.add.at(m, (tok[vis], c[vis]), mag[vis])
                h = m @ self.directions[layer] + ctx0 @ self.rotations[layer].T + noise[layer]
                hidden.append(h)
            seq = np.repeat(np.arange(first, first + n_seq), cfg.seq_len)
            pos = np.tile(np.arange(cfg.seq_len), n_seq)
            yield PlantedBatch(
                seq.astype(np.int64), pos.astype(np.int64), hidden, tok, atom, mag, mode
            )
            first += n_seq

    def token_ids(self, batch: PlantedBatch) -> I64:
        """Synthetic token id of every token of ``batch``: its strongest atom + 1, or 0.

        Planted tokens have no text; this id names the atom of largest magnitude at the
        position (0 when no atom is active), so that contexts can be read
        (:meth:`vocabulary` gives the strings).
        """
        out = np.zeros(batch.seq.size, np.int64)
        order = np.lexsort((-batch.atom_mag, batch.atom_token))
        tok = batch.atom_token[order]
        first = np.ones(tok.size, bool)
        first[1:] = tok[1:] != tok[:-1]
        out[tok[first]] = batch.atom_id[order][first] + 1
        return out

    def vocabulary(self) -> list[str]:
        """Return readable strings of the ids of :meth:`token_ids`, indexed by id.

        ``" ·"`` for 0, a made-up word per atom (two consonant-vowel syllables, with a leading
        space) for the others.
        """
        syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
        n = len(syllables)
        return [" \u00b7"] + [
            " " + syllables[a % n] + syllables[(a // n + 3 * a) % n]
            for a in range(self.config.n_atoms)
        ]

    def _concept_of_atom(self, layer: int) -> I64:
        out = np.full(self.config.n_atoms, -1, np.int64)
        for c, atoms in enumerate(self.concepts[layer]):
            out[atoms] = c
        return out

    def summary(self) -> dict[str, Any]:
        """Sizes and events, for reports."""
        return {
            "config": asdict(self.config),
            "features_per_layer": [self.n_features(layer) for layer in range(self.n_layers)],
            "shape_pairs": len(self.shape_pairs),
        }


def _unit(x: F64) -> F64:
    out: F64 = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    return out


def _random_rotation(rng: np.random.Generator, d: int, angle: float) -> F64:
    """Return an orthogonal matrix near the identity: exp of a small random skew matrix."""
    from scipy.linalg import expm

    a = rng.normal(size=(d, d)) * angle / np.sqrt(d)
    out: F64 = expm(a - a.T)
    return out


def make_planted_model(config: PlantedConfig | None = None, **overrides: Any) -> PlantedModel:
    """Build a planted model from a config (keyword arguments override its fields)."""
    cfg = PlantedConfig(**{**asdict(config or PlantedConfig()), **overrides})
    _check_config(cfg)
    rng = np.random.default_rng([cfg.seed, 1])
    d, n_atoms = cfg.d_model, cfg.n_atoms

    # Atoms: Zipf frequencies in random order, families, context modes.
    freq = 1.0 / np.arange(1, n_atoms + 1) ** cfg.zipf
    freq = freq[rng.permutation(n_atoms)]
    scale = rng.uniform(0.8, 1.6, n_atoms)
    family = rng.integers(0, cfg.n_families, n_atoms)
    fam_modes = _unit(rng.normal(size=(cfg.n_families, 3, d))) * cfg.context_scale
    mode_vecs: list[F64] = []
    atom_modes: list[I64] = []
    for a in range(n_atoms):
        n_modes = 1 + int(rng.random() < 0.5)
        chosen = rng.choice(3, size=n_modes, replace=False)
        own = rng.normal(size=(n_modes, d)) * cfg.mode_spread / np.sqrt(d)
        atom_modes.append(np.arange(len(mode_vecs), len(mode_vecs) + n_modes, dtype=np.int64))
        mode_vecs.extend(fam_modes[family[a], chosen] + own)

    # Shape pairs: atom x fires at c + u or c - u, atom y only at c; both weak, equally common.
    shape_pairs: list[tuple[int, int]] = []
    pool = rng.permutation(n_atoms)
    for i in range(min(cfg.n_shape_pairs, n_atoms // 2)):
        x, y = int(pool[2 * i]), int(pool[2 * i + 1])
        center = _unit(rng.normal(size=d)) * cfg.context_scale
        u = _unit(rng.normal(size=d)) * cfg.context_scale * 1.5
        atom_modes[x] = np.array([len(mode_vecs), len(mode_vecs) + 1], np.int64)
        mode_vecs.extend([center + u, center - u])
        atom_modes[y] = np.array([len(mode_vecs)], np.int64)
        mode_vecs.append(center)
        scale[[x, y]] = 1.0
        freq[y] = freq[x]
        shape_pairs.append((x, y))
    protected = {a for pair in shape_pairs for a in pair}

    # Layer 0: most atoms are singleton concepts; some pairs (to split later); some invisible
    # atoms are held back to be born later.
    order = [int(a) for a in rng.permutation(n_atoms) if int(a) not in protected]
    n_hidden = round(cfg.birth * n_atoms * (cfg.n_layers - 1))
    hidden_pool, rest = order[:n_hidden], order[n_hidden:]
    concepts: list[list[int]] = [[a] for pair in shape_pairs for a in pair]
    i = 0
    while i < len(rest):
        if rng.random() < cfg.split * 2 and i + 1 < len(rest):
            concepts.append([rest[i], rest[i + 1]])
            i += 2
        else:
            concepts.append([rest[i]])
            i += 1
    dirs = list(_unit(rng.normal(size=(len(concepts), d))))
    # The two concepts of a shape pair start with similar directions (cosine about 0.7), as
    # when an SAE splits one concept by context.
    for i in range(len(shape_pairs)):
        dirs[2 * i + 1] = _unit(0.7 * dirs[2 * i] + 0.71 * dirs[2 * i + 1])
    layers_concepts = [concepts]
    layers_dirs = [np.array(dirs)]
    rotation = np.eye(d)
    rotations = [rotation]

    for _ in range(1, cfg.n_layers):
        prev, prev_dirs = layers_concepts[-1], layers_dirs[-1]
        new: list[list[int]] = []
        new_dirs: list[F64] = []
        singles: list[int] = []
        for c, atoms in enumerate(prev):
            base = prev_dirs[c]
            free = not protected.intersection(atoms)
            r = rng.random()
            if free and r < cfg.death:
                continue
            if free and len(atoms) > 1 and r < cfg.death + cfg.split * 4:
                for a in atoms:
                    new.append([a])
                    new_dirs.append(_unit(base + rng.normal(size=d) * _CHILD_SPREAD / np.sqrt(d)))
                continue
            if free and len(atoms) == 1 and r < cfg.death + cfg.merge:
                singles.append(c)
                continue
            new.append(list(atoms))
            new_dirs.append(_unit(base + rng.normal(size=d) * cfg.drift / np.sqrt(d)))
        # Merges: pair up the chosen singletons.
        for j in range(0, len(singles) - 1, 2):
            c1, c2 = singles[j], singles[j + 1]
            new.append(prev[c1] + prev[c2])
            new_dirs.append(_unit(prev_dirs[c1] + prev_dirs[c2]))
        if len(singles) % 2:
            c = singles[-1]
            new.append(list(prev[c]))
            new_dirs.append(_unit(prev_dirs[c] + rng.normal(size=d) * cfg.drift / np.sqrt(d)))
        # Births: held-back atoms become visible.
        n_born = min(len(hidden_pool), round(cfg.birth * n_atoms))
        for a in hidden_pool[:n_born]:
            new.append([a])
            new_dirs.append(_unit(rng.normal(size=d)))
        hidden_pool = hidden_pool[n_born:]
        rotation = _random_rotation(rng, d, cfg.rotation) @ rotation
        rotations.append(rotation)
        layers_concepts.append(new)
        layers_dirs.append(np.array(new_dirs))

    # Directions live in each layer's rotated frame.
    directions = [dd @ rot.T for dd, rot in zip(layers_dirs, rotations, strict=True)]
    saes = []
    for layer in range(cfg.n_layers):
        n_c = len(layers_concepts[layer])
        perm = rng.permutation(n_c).astype(np.int64)
        true = directions[layer][perm]
        enc = _unit(true + rng.normal(size=true.shape) * cfg.encoder_noise / np.sqrt(d))
        dec = _unit(true + rng.normal(size=true.shape) * cfg.decoder_noise / np.sqrt(d))
        act_scale = np.exp(rng.normal() * 0.7 + rng.normal(size=n_c) * 0.2)
        saes.append(
            PlantedSAE(
                W_enc=(enc * act_scale[:, None]).T.copy(),
                b_enc=np.zeros(n_c),
                W_dec=dec / act_scale[:, None],
                threshold=cfg.threshold * act_scale,
                concept_of_feature=perm,
            )
        )
    return PlantedModel(
        config=cfg,
        atom_freq=np.asarray(freq, dtype=np.float64),
        atom_scale=scale,
        atom_modes=atom_modes,
        mode_vectors=np.array(mode_vecs),
        concepts=[[np.array(c, np.int64) for c in lc] for lc in layers_concepts],
        directions=directions,
        rotations=rotations,
        saes=saes,
        shape_pairs=shape_pairs,
    )


def _check_config(cfg: PlantedConfig) -> None:
    for name in ("n_layers", "d_model", "n_atoms", "n_families", "seq_len"):
        v = getattr(cfg, name)
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name}: expected a positive integer, got {v!r}")
    for name in ("split", "merge", "birth", "death"):
        v = getattr(cfg, name)
        if not 0.0 <= v <= 0.2:
            raise ValueError(f"{name}: expected a rate in [0, 0.2], got {v!r}")
    if cfg.atoms_per_token <= 0:
        raise ValueError(f"atoms_per_token: expected > 0, got {cfg.atoms_per_token!r}")


def collect_planted(
    model: PlantedModel,
    layers: Sequence[int],
    *,
    n_tokens: int,
    samples_per_feature: int = 64,
    reference_layer: int | None = None,
    mode: str = "weighted",
    seed: int = 0,
    stream_seed: int = 0,
    keep_activations: int = 0,
    token_ids: list[I64] | None = None,
) -> tuple[dict[int, FeatureDistributions], dict[int, F64]]:
    """Collect feature distributions of several layers from one planted token stream.

    Parameters
    ----------
    model : PlantedModel
    layers : sequence of int
        Layers whose SAE features are sampled.
    n_tokens : int
        Tokens streamed.
    samples_per_feature : int
        Sample size n per feature.
    reference_layer : int, optional
        Support points are the hidden states at this layer at the sampled positions
        (default: the last of ``layers``).
    mode : {"weighted", "top"}
        As in :class:`semot.FeatureSampler`.
    seed : int
        Sampler seed.
    stream_seed : int
        Seed of the token stream (different seeds: disjoint token streams).
    keep_activations : int
        Also return the dense activations of the first ``keep_activations`` tokens per layer
        (for the activation-correlation baseline).
    token_ids : list, optional
        Receives the synthetic token ids (:meth:`PlantedModel.token_ids`) of every sequence
        of the stream, one ``(seq_len,)`` array per sequence in stream order (for the
        contexts the browser shows).

    Returns
    -------
    dict of FeatureDistributions, dict of ndarray
        Per layer: the distributions, and the kept activations ``(keep_activations, F)``.
    """
    layers = [int(x) for x in layers]
    for x in layers:
        if not 0 <= x < model.n_layers:
            raise ValueError(f"layers: layer {x} is not in 0..{model.n_layers - 1}")
    ref = layers[-1] if reference_layer is None else int(reference_layer)
    if not 0 <= ref < model.n_layers:
        raise ValueError(f"reference_layer: {ref} is not in 0..{model.n_layers - 1}")
    d = model.config.d_model
    samplers = {
        x: FeatureSampler(model.n_features(x), samples_per_feature, d, mode=mode, seed=seed)  # type: ignore[arg-type]
        for x in layers
    }
    kept: dict[int, list[F64]] = {x: [] for x in layers}
    n_kept = n_streamed = 0
    for batch in model.tokens(n_tokens, stream_seed):
        pts = batch.hidden[ref].astype(np.float32)
        if token_ids is not None:
            token_ids.extend(model.token_ids(batch).reshape(-1, model.config.seq_len))
        for x in layers:
            acts = model.saes[x].encode(batch.hidden[x])
            samplers[x].update(acts.astype(np.float32), pts, batch.seq, batch.pos)
            if n_kept < keep_activations:
                kept[x].append(acts[: keep_activations - n_kept])
        n_kept += len(batch.seq)
        n_streamed += len(batch.seq)
    out = {}
    for x in layers:
        out[x] = to_distributions(
            samplers[x].result(),
            np.arange(model.n_features(x)),
            {
                "model": "semot.synthetic",
                "hook": f"layer{x}",
                "reference": f"layer{ref}",
                "sampling": {"mode": mode, "samples_per_feature": samples_per_feature},
                "seed": seed,
                "stream_seed": stream_seed,
                "n_tokens": n_streamed,
            },
        )
    acts_out = {
        x: np.concatenate(v) if v else np.zeros((0, model.n_features(x))) for x, v in kept.items()
    }
    return out, acts_out


def save_planted_run(
    distributions: dict[int, FeatureDistributions], out: str | os.PathLike[str]
) -> Path:
    """Save collected layers as a run directory that ``semot match`` and ``load_run`` read.

    Layer ``x`` goes to ``out/layer{x}``; ``run.json`` lists the sites, as :func:`semot.collect`
    writes it.
    """
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    names = {}
    for x, fd in distributions.items():
        name = f"layer{x}"
        fd.save(root / name, overwrite=True)
        names[name] = name
    write_run_record(root, names, {"source": "semot.synthetic"})
    return root
