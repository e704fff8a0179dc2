"""Phantom cohorts: reproducible lists of phantom parameters spanning the cases a planner meets.

A cohort cycles through the fracture patterns (left, right, bilateral, none) and, in
the cases without a fracture, a lytic lesion (left ala, right ala, sacral body); it
alternates supine and prone, cycles through the given voxel spacings and draws bone
density (osteoporosis 0-1) and anatomical variation (0.5-1.5) from the seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sample_ct.phantom import PhantomParams
from trajplan.errors import InputError

FRACTURE_CYCLE = ("left", "right", "bilateral", "none")
LESION_CYCLE = ("left", "right", "body")


def cohort(cases: int, seed: int, spacings: Sequence[float] = (1.0, 1.25, 1.5, 2.0), *,
           vary_anatomy: bool = True, osteoporosis: tuple[float, float] = (0.0, 1.0)) -> list[PhantomParams]:
    """Parameters of ``cases`` phantoms; the same arguments give the same cohort.

    Parameters
    ----------
    cases : int
        Number of phantoms, 1-1000.
    seed : int
        Case ``i`` uses phantom seed ``seed + i``; densities and variation come from ``seed``.
    spacings : sequence of float
        Isotropic voxel sizes (mm) cycled over the cases.
    vary_anatomy : bool
        Draw the anatomical variation per case (else every case uses 1.0).
    osteoporosis : (float, float)
        The range (within 0-1) bone density is drawn from, uniformly.

    Raises
    ------
    InputError
        For a case count outside 1-1000, no spacing or an osteoporosis range outside 0-1.
    """
    if not 1 <= cases <= 1000:
        raise InputError(f"a cohort needs 1 to 1000 cases, got {cases}")
    if not len(spacings):
        raise InputError("a cohort needs at least one spacing")
    if not 0.0 <= osteoporosis[0] <= osteoporosis[1] <= 1.0:
        raise InputError(f"an osteoporosis range must lie within 0-1, low to high, got {osteoporosis}")
    density = np.random.default_rng(seed)
    anatomy = np.random.default_rng((seed, 1))
    out = []
    for i in range(cases):
        fracture = FRACTURE_CYCLE[i % len(FRACTURE_CYCLE)]
        out.append(PhantomParams(
            seed=seed + i, spacing=(float(spacings[i % len(spacings)]),) * 3, fracture=fracture,
            lesion=LESION_CYCLE[i % len(LESION_CYCLE)] if fracture == "none" else "none",
            osteoporosis=round(float(density.uniform(*osteoporosis)), 2),
            variation=round(float(anatomy.uniform(0.5, 1.5)), 2) if vary_anatomy else 1.0,
            position=("supine", "prone")[i % 2]))
    return out
