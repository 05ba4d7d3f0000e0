"""A synthetic attribution graph with planted supernodes, from a planted model.

One prompt is drawn from the planted model's token stream. Every SAE feature that fires at a
position becomes a feature node ``<layer>_<feature>_<pos>`` (circuit-tracer ids); each
position gets an embedding node and one error node per layer, and the last position a target
logit. Links follow the planted concepts: a node feeds the nodes of later layers that share one
of its atoms (strong, positive), plus weak random links; embeddings feed layer 0, the last
layer feeds the logit. The *planted supernodes* are the groups of feature nodes that share an
atom (a concept seen at several layers or positions), the grouping an interpreter would make
by hand.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from semot.synthetic.planted import PlantedModel


def planted_graph(
    model: PlantedModel, *, n_positions: int = 8, seed: int = 0, max_nodes: int = 400
) -> tuple[dict[str, Any], npt.NDArray[np.int64]]:
    """Build the graph JSON (circuit-tracer format) and the planted group of every node.

    Returns
    -------
    dict, ndarray of int64
        The graph (``metadata``, ``qParams`` with the planted supernodes, ``nodes``,
        ``links``) and per node the planted group id (error, embedding and logit nodes each
        alone).
    """
    rng = np.random.default_rng([model.config.seed, seed, 11])
    batch = next(model.tokens(n_positions, seed=1000 + seed, batch_tokens=model.config.seq_len))
    atoms_at = [set(batch.atom_id[batch.atom_token == p].tolist()) for p in range(n_positions)]
    tokens = [
        f"tok{p}:" + "+".join(f"a{a}" for a in sorted(atoms_at[p])) for p in range(n_positions)
    ]
    n_layers = model.n_layers
    nodes: list[dict[str, Any]] = []
    node_atoms: list[set[int]] = []
    node_layer: list[int] = []
    node_pos: list[int] = []

    def add(node: dict[str, Any], atoms: set[int], layer: int, pos: int) -> int:
        nodes.append(node)
        node_atoms.append(atoms)
        node_layer.append(layer)
        node_pos.append(pos)
        return len(nodes) - 1

    for p in range(n_positions):
        add(_node(f"E_{p}_{p}", "embedding", "E", p, p, f"Emb: {tokens[p]!r}"), set(), -1, p)
    feat_atoms = [model.feature_atoms(x) for x in range(n_layers)]
    for layer in range(n_layers):
        acts = model.saes[layer].encode(batch.hidden[layer][:n_positions])
        for p in range(n_positions):
            for f in np.flatnonzero(acts[p] > 0):
                atoms = feat_atoms[layer][f]
                if not atoms & atoms_at[p]:
                    continue  # interference firings stay out, as pruning would drop them
                nid = f"{layer}_{f}_{p}"
                add(
                    _node(nid, "cross layer transcoder", str(layer), p, int(f), "",
                          activation=float(acts[p, f])),
                    set(atoms), layer, p,
                )  # fmt: skip
            add(
                _node(f"{layer}_-1_{p}", "mlp reconstruction error", str(layer), p, -1,
                      f"Err: mlp {tokens[p]!r}"),
                set(), layer, p,
            )  # fmt: skip
    logit = add(
        {
            **_node(f"{n_layers + 1}_0_{n_positions - 1}", "logit", str(n_layers + 1),
                    n_positions - 1, 0, 'Output "next" (p=0.900)'),
            "token_prob": 0.9,
            "is_target_logit": True,
        },
        set(), n_layers + 1, n_positions - 1,
    )  # fmt: skip
    lay = np.array(node_layer)
    pos = np.array(node_pos)
    kinds = [n["feature_type"] for n in nodes]
    is_feat = np.array([k == "cross layer transcoder" for k in kinds])
    links: list[dict[str, Any]] = []
    for j in np.flatnonzero(is_feat):
        # Inputs: the embedding at its position (layer 0) or earlier feature nodes.
        earlier = np.flatnonzero(is_feat & (lay < lay[j]) & (pos <= pos[j]))
        for i in earlier:
            if node_atoms[i] & node_atoms[j]:
                w = rng.uniform(0.5, 1.5)
            elif rng.random() < 0.05:
                w = rng.normal(0, 0.1)
            else:
                continue
            links.append(
                {"source": nodes[i]["node_id"], "target": nodes[j]["node_id"], "weight": w}
            )
        if lay[j] == 0 or not any(node_atoms[i] & node_atoms[j] for i in earlier):
            links.append(
                {"source": nodes[int(pos[j])]["node_id"], "target": nodes[j]["node_id"],
                 "weight": rng.uniform(0.5, 1.5)}
            )  # fmt: skip
        err = [k for k in range(len(nodes)) if kinds[k].endswith("error") and lay[k] == lay[j] - 1
               and pos[k] == pos[j]]  # fmt: skip
        for k in err:
            links.append({"source": nodes[k]["node_id"], "target": nodes[j]["node_id"],
                          "weight": rng.normal(0, 0.2)})  # fmt: skip
        if lay[j] == n_layers - 1 and pos[j] == n_positions - 1:
            links.append({"source": nodes[j]["node_id"], "target": nodes[logit]["node_id"],
                          "weight": rng.uniform(0.5, 1.5)})  # fmt: skip
    # Errors feed the next layer's features only; an error with no link would be pruned.
    used = {lk["source"] for lk in links} | {lk["target"] for lk in links}
    keep = [
        i for i, n in enumerate(nodes) if n["node_id"] in used or kinds[i] in ("embedding", "logit")
    ]
    nodes = [nodes[i] for i in keep]
    node_atoms = [node_atoms[i] for i in keep]
    # Planted groups: union of feature nodes sharing an atom.
    parent = list(range(len(nodes)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    owner: dict[int, int] = {}
    for node, node_set in enumerate(node_atoms):
        for atom in node_set:
            if atom in owner:
                parent[find(node)] = find(owner[atom])
            else:
                owner[atom] = node
    roots = np.array([find(i) for i in range(len(nodes))])
    _, labels = np.unique(roots, return_inverse=True)
    groups: dict[int, list[str]] = {}
    for node, g in enumerate(labels.tolist()):
        groups.setdefault(int(g), []).append(nodes[node]["node_id"])
    supernodes = []
    for g, members in groups.items():
        if len(members) > 1:
            shared: set[int] = set()
            for node in np.flatnonzero(labels == g).tolist():
                shared |= node_atoms[node]
            supernodes.append([f"concept {'+'.join(f'a{a}' for a in sorted(shared))}", *members])
    graph = {
        "metadata": {
            "slug": f"semot-planted-{model.config.seed}-{seed}",
            "scan": "semot-planted",
            "prompt_tokens": tokens,
            "prompt": " ".join(tokens),
            "schema_version": 1,
            "info": {"description": "synthetic attribution graph from semot.synthetic"},
        },
        "qParams": {
            "pinnedIds": [m for sn in supernodes for m in sn[1:]][:200],
            "supernodes": supernodes,
            "linkType": "both",
            "clickedId": "",
            "sg_pos": "",
        },
        "nodes": nodes,
        "links": links,
    }
    if len(nodes) > max_nodes:
        raise ValueError(f"planted graph has {len(nodes)} nodes > max_nodes={max_nodes}")
    return graph, labels.astype(np.int64)


def _node(
    node_id: str, kind: str, layer: str, pos: int, feature: int, clerp: str,
    activation: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    return {
        "node_id": node_id,
        "feature": feature,
        "layer": layer,
        "ctx_idx": pos,
        "feature_type": kind,
        "token_prob": 0.0,
        "is_target_logit": False,
        "run_idx": 0,
        "reverse_ctx_idx": 0,
        "jsNodeId": node_id,
        "clerp": clerp,
        "influence": None,
        "activation": activation,
    }
