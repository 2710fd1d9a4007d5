"""The ``duplicates`` section of the dataset build (see :mod:`medadv_lib.data.build`)."""
from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Sequence
import numpy as np
from ..sources import SOURCES

from .candidates import Candidate
from .images import Fingerprints, LoadedImage
from .rules import DUP_MAX_DIST, VISUAL_EXCLUDE, is_duplicate


@dataclass
class SimilarPairs:
    """Image pairs ``i < j`` with hash distance ``dist <= DUP_MAX_DIST`` and their
    thumbnail (``low``) and high-pass (``high``) correlations."""

    i: np.ndarray
    j: np.ndarray
    dist: np.ndarray
    low: np.ndarray
    high: np.ndarray

    def select(self, mask: np.ndarray) -> "SimilarPairs":
        """The pairs where ``mask`` is true."""
        return SimilarPairs(self.i[mask], self.j[mask], self.dist[mask], self.low[mask],
                            self.high[mask])


def find_similar_pairs(fp: Fingerprints, max_dist: int = DUP_MAX_DIST,
                       block: int = 512) -> SimilarPairs:
    """All pairs within ``max_dist`` (= max of aHash and dHash Hamming distances).

    Hamming distances come from matrix products of the 0/1 hash matrices, a block of
    rows at a time (memory ``block * n``); correlations only for the pairs found.
    """
    n = len(fp.ahash)
    a, d = fp.ahash.astype(np.float32), fp.dhash.astype(np.float32)
    ones_a, ones_d = a.sum(1), d.sum(1)
    found_i, found_j, found_d = [], [], []
    for start in range(0, n, block):
        stop = min(start + block, n)
        ham_a = ones_a[start:stop, None] + ones_a[None, :] - 2.0 * (a[start:stop] @ a.T)
        ham_d = ones_d[start:stop, None] + ones_d[None, :] - 2.0 * (d[start:stop] @ d.T)
        dist = np.rint(np.maximum(ham_a, ham_d)).astype(np.int32)
        upper = np.arange(n)[None, :] > np.arange(start, stop)[:, None]
        rows, cols = np.nonzero((dist <= max_dist) & upper)
        found_i.append(rows + start)
        found_j.append(cols)
        found_d.append(dist[rows, cols])
    i = np.concatenate(found_i) if found_i else np.zeros(0, np.int64)
    j = np.concatenate(found_j) if found_j else np.zeros(0, np.int64)
    dist = np.concatenate(found_d) if found_d else np.zeros(0, np.int32)
    low = np.einsum("pk,pk->p", fp.low[i], fp.low[j]) / max(fp.low.shape[1], 1)
    high = np.einsum("pk,pk->p", fp.high[i], fp.high[j]) / max(fp.high.shape[1], 1)
    return SimilarPairs(i.astype(np.int64), j.astype(np.int64), dist, low, high)


class DisjointSet:
    """Union-find over hashable nodes (path halving)."""

    def __init__(self) -> None:
        self.parent: dict = {}

    def find(self, node):
        """Representative of ``node``'s set."""
        parent = self.parent
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    def union(self, a, b) -> bool:
        """Merge the sets of ``a`` and ``b``; True if they were apart."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        self.parent[rb] = ra
        return True


_RANK = {s.key: n for n, s in enumerate(SOURCES)}


def _order(cand: Candidate) -> tuple[int, str]:
    """Sort key: source order, then path."""
    return _RANK[cand.source], cand.path


@dataclass
class Survivor:
    """The image kept of a near-duplicate cluster, with its dropped copies."""

    index: int
    copies: list[int]


def resolve_duplicates(loaded: Sequence[LoadedImage], pairs: SimilarPairs,
                       log: collections.Counter) -> tuple[list[Survivor], list[list[Candidate]]]:
    """Cluster near-duplicates; keep the earliest source's image of each clean cluster.

    A cluster is dropped whole if a member is excluded by a rule or if its members
    carry different labels.  Returns the survivors (in source, path order) and the
    clusters dropped for conflicting labels.
    """
    dups = pairs.select(is_duplicate(pairs.dist, pairs.low, pairs.high))
    sets = DisjointSet()
    for a, b in zip(dups.i.tolist(), dups.j.tolist()):
        sets.union(a, b)
    clusters: dict[int, list[int]] = collections.defaultdict(list)
    for k in range(len(loaded)):
        clusters[sets.find(k)].append(k)

    survivors, conflicts = [], []
    for members in clusters.values():
        members.sort(key=lambda k: _order(loaded[k].candidate))
        cands = [loaded[k].candidate for k in members]
        for cand in cands:
            if cand.exclude is None and (cand.source, cand.path) in VISUAL_EXCLUDE:
                cand.exclude = "visual check: " + VISUAL_EXCLUDE[(cand.source, cand.path)]
        reasons = [c.exclude for c in cands if c.exclude]
        if reasons:
            for cand in cands:
                log[(cand.source, cand.exclude or
                     f"near-duplicate of an excluded image ({reasons[0]})")] += 1
            continue
        if len({c.label for c in cands}) > 1:
            conflicts.append(cands)
            for cand in cands:
                log[(cand.source, "near-duplicate cluster with conflicting labels")] += 1
            continue
        for cand in cands[1:]:
            log[(cand.source, "near-duplicate of a kept image")] += 1
        survivors.append(Survivor(members[0], members[1:]))
    survivors.sort(key=lambda s: _order(loaded[s.index].candidate))
    return survivors, conflicts
