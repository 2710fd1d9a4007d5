"""The ``split`` section of the dataset build (see :mod:`medadv_lib.data.build`)."""
from __future__ import annotations

import collections
import random
from dataclasses import dataclass
from typing import Mapping, Sequence

from .candidates import Candidate
from .duplicates import DisjointSet, SimilarPairs, Survivor
from .images import LoadedImage
from .rules import LABEL_CAPS, SPLIT_SHARES, maybe_same_patient


@dataclass
class Selected:
    """An image of the dataset."""

    index: int
    candidate: Candidate
    image_id: str
    patient_id: str
    has_patient: bool
    copy_patients: list[str]
    split: str = ""


def select_and_name(survivors: Sequence[Survivor], loaded: Sequence[LoadedImage],
                    log: collections.Counter) -> list[Selected]:
    """Apply the label caps and give ids ``<source>-NNNN`` (numbered per source)."""
    per_label: collections.Counter = collections.Counter()
    per_source: collections.Counter = collections.Counter()
    chosen = []
    for survivor in survivors:
        cand = loaded[survivor.index].candidate
        cap = LABEL_CAPS[cand.label]
        if cap is not None and per_label[cand.label] >= cap:
            log[(cand.source, f"over the cap of {cap} {cand.label} images")] += 1
            continue
        per_label[cand.label] += 1
        per_source[cand.source] += 1
        number = per_source[cand.source]
        copies = [loaded[k].candidate.patient for k in survivor.copies]
        chosen.append(Selected(
            index=survivor.index, candidate=cand, image_id=f"{cand.source}-{number:04d}",
            patient_id=cand.patient or f"{cand.source}-img{number:04d}",
            has_patient=bool(cand.patient), copy_patients=[p for p in copies if p]))
    return chosen


def group_patients(chosen: Sequence[Selected], pairs: SimilarPairs) -> tuple[dict[str, str], int]:
    """Split groups: ``image_id -> group`` (the group's smallest image id) and the
    number of similarity links made.

    Patient ids are merged across near-duplicate copies of one picture, and an image
    without a source patient id joins a same-label image with thumbnail correlation
    >= 0.93 (hash distance <= 40).
    """
    sets = DisjointSet()
    for sel in chosen:
        sets.union(("image", sel.image_id), ("patient", sel.patient_id))
        for patient in sel.copy_patients:
            sets.union(("image", sel.image_id), ("patient", patient))
    by_index = {sel.index: sel for sel in chosen}
    near = pairs.select(maybe_same_patient(pairs.dist, pairs.low))
    links = 0
    for a, b in zip(near.i.tolist(), near.j.tolist()):
        sa, sb = by_index.get(a), by_index.get(b)
        if (sa is None or sb is None or (sa.has_patient and sb.has_patient)
                or sa.candidate.label != sb.candidate.label):
            continue
        links += sets.union(("image", sa.image_id), ("image", sb.image_id))
    smallest: dict = {}
    for sel in chosen:
        root = sets.find(("image", sel.image_id))
        smallest[root] = min(smallest.get(root, sel.image_id), sel.image_id)
    return {sel.image_id: smallest[sets.find(("image", sel.image_id))] for sel in chosen}, links


def assign_splits(chosen: Sequence[Selected], groups: Mapping[str, str], seed: int) -> None:
    """Patient-group-disjoint split, stratified by (label, source), in place.

    Each group belongs to the stratum most of its images are in.  Per stratum (in
    sorted order) the groups are shuffled with one ``random.Random(seed)``, stably
    sorted largest first, and each goes to the split furthest below its share.
    """
    members: dict[str, list[Selected]] = collections.defaultdict(list)
    for sel in chosen:
        members[groups[sel.image_id]].append(sel)
    strata: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
    for group in sorted(members):
        counts = collections.Counter((m.candidate.label, m.candidate.source) for m in members[group])
        strata[counts.most_common(1)[0][0]].append(group)
    rng = random.Random(seed)
    for stratum in sorted(strata):
        order = strata[stratum]
        rng.shuffle(order)
        order.sort(key=lambda g: -len(members[g]))
        total = sum(len(members[g]) for g in order)
        filled: collections.Counter = collections.Counter()
        for group in order:
            name = max(SPLIT_SHARES, key=lambda s: s[1] * total - filled[s[0]])[0]
            filled[name] += len(members[group])
            for sel in members[group]:
                sel.split = name
