"""The real CT: segment it, measure the sacrum against its neighbours' reference masks, draw it.

Usage: python benchmarks/real_ct.py [--ct ../shared/ct/ts_example_ct.nii.gz]
                                    [--masks ../shared/ct/ts_example_masks] [--png FILE]

Prints the segmentation time, the route and flags, the volume of each label found, and for
each TotalSegmentator reference mask of a neighbour (hips, L5, L4, femurs) how much of the
sacral bone lies inside it (ml and fraction of the sacral bone), and the Dice of the ilia and
L5 against the reference hips and L5. With ``--png FILE``, draws the sacrum's axial, coronal
and sagittal mid-slices with the labels outlined (the reference hip and L5 masks dashed), to be
checked by eye: a picture of the real CT, so write it outside the repository (derived data of
../shared is never kept in it).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from segmentation.metrics import dice  # noqa: E402
from segmentation.pipeline import Segmentation, segment  # noqa: E402
from trajplan import labels as lt  # noqa: E402
from trajplan.io.atomic import atomic_path  # noqa: E402
from trajplan.io.files import read_volume_file  # noqa: E402
from trajplan.io.reader import read_ct  # noqa: E402
from trajplan.volume import Volume  # noqa: E402

PAD_MM = 40.0
NEIGHBOURS = ("hip_left", "hip_right", "vertebrae_L5", "vertebrae_L4", "femur_left", "femur_right")
DRAWN = ("sacrum", "ala_left", "ala_right", "anterior_cortex", "canal", "si_joint_left", "si_joint_right",
         "ilium_left", "ilium_right", "L5", "L5_S1_disc",
         *(f"foramen_{lv}_{sd}" for lv in lt.LEVELS for sd in lt.SIDES))


def _panels(canon_ct: np.ndarray, canon_labels: np.ndarray, refs: dict[str, np.ndarray], pad: np.ndarray):
    """(title, CT slice, label slice, reference slices) for the sacrum's three mid-planes, ``pad`` voxels around it."""
    sacral = np.argwhere(lt.sacral_bone(canon_labels))
    box = tuple(slice(max(lo - p, 0), hi + p + 1) for lo, hi, p in zip(sacral.min(axis=0), sacral.max(axis=0), pad))
    canon_ct, canon_labels = canon_ct[box], canon_labels[box]
    refs = {k: v[box] for k, v in refs.items()}
    centre = np.round(sacral.mean(axis=0)).astype(int) - [b.start for b in box]
    cuts = (("axial", 2), ("coronal", 1), ("sagittal", 0))
    for title, axis in cuts:
        index = [slice(None)] * 3
        index[axis] = centre[axis]
        take = tuple(index)
        # Canonical x runs to the patient's left, y to the back, z up: patient right on the image left,
        # anterior up (axial) or on the left (sagittal), superior up (coronal, sagittal).
        orient = (lambda a: a.T) if axis == 2 else (lambda a: a.T[::-1])  # noqa: E731
        yield (f"{title} (slice {centre[axis] + box[axis].start})", orient(canon_ct[take]), orient(canon_labels[take]),
               {k: orient(v[take]) for k, v in refs.items()})


def measure(ct_path: str | Path, masks_dir: str | Path) -> dict:
    """Segment the real CT and measure its sacral bone against the neighbours' reference masks.

    Returns the CT, the segmentation, the seconds it took, the sacral bone (ml), the sacral bone
    inside each reference mask in NEIGHBOURS (ml), the reference masks, and the Dice of the ilia
    and L5 against the reference hips and L5.
    """
    ct = read_ct(ct_path)
    start = time.perf_counter()
    seg = segment(ct)
    seconds = time.perf_counter() - start
    sacral = lt.sacral_bone(seg.labels)
    refs = {name: read_volume_file(Path(masks_dir) / f"{name}.nii.gz").array > 0.5 for name in NEIGHBOURS}
    return {
        "ct": ct, "seg": seg, "seconds": seconds, "refs": refs,
        "sacral_ml": float(sacral.sum() * ct.voxel_volume_ml),
        "inside_ml": {name: float((ref & sacral).sum() * ct.voxel_volume_ml) for name, ref in refs.items()},
        "dice": {name: dice(lt.mask(seg.labels, name), refs[ref])
                 for name, ref in (("ilium_left", "hip_left"), ("ilium_right", "hip_right"), ("L5", "vertebrae_L5"))},
    }


def _draw(ct: Volume, seg: Segmentation, refs: dict[str, np.ndarray], png: str) -> None:
    """The sacrum's mid-slices with the labels and the reference hips and L5 outlined, written to ``png``."""
    canon_ct, reorder = ct.to_canonical()
    canon_labels = reorder.apply(seg.labels).array
    canon_refs = {k: reorder.apply(ct.with_array(v.astype(np.uint8))).array > 0 for k, v in refs.items()
                  if k in ("hip_left", "hip_right", "vertebrae_L5")}
    fig, axes = plt.subplots(1, 3, figsize=(15, 6))
    for ax, (title, grey, labels, ref) in zip(axes, _panels(canon_ct.array, canon_labels, canon_refs,
                                                                np.ceil(PAD_MM / canon_ct.spacing).astype(int))):
        ax.imshow(np.clip(grey, -200, 800), cmap="gray", interpolation="nearest")
        for name in DRAWN:
            mask = labels == lt.value(name)
            if mask.any():
                ax.contour(mask, [0.5], colors=[np.array(lt.color(name)) / 255.0], linewidths=1.2)
        for mask in ref.values():
            if mask.any():
                ax.contour(mask, [0.5], colors="red", linewidths=0.8, linestyles="dashed")
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Real CT (3 mm): labels outlined in their table colours; TotalSegmentator hips and L5 dashed red")
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=100, format="png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ct", default="../shared/ct/ts_example_ct.nii.gz")
    parser.add_argument("--masks", default="../shared/ct/ts_example_masks")
    parser.add_argument("--png", help="draw the mid-slices to this PNG (outside the repository: real data)")
    args = parser.parse_args()

    found = measure(args.ct, args.masks)
    ct, seg, refs = found["ct"], found["seg"], found["refs"]
    print(f"segmented in {found['seconds']:.1f} s; partial: {seg.report['partial_reason']}")
    for note in seg.report["notes"]:
        print("  note:", note)
    for name, entry in seg.report["structures"].items():
        if entry["voxels"]:
            print(f"  {name:18s} {entry['volume_ml']:8.1f} ml")
    print(f"sacral bone {found['sacral_ml']:.1f} ml")
    for name, ml in found["inside_ml"].items():
        print(f"  inside {name:13s} {ml:6.2f} ml ({ml / found['sacral_ml']:.1%} of the sacral bone)")
    for name, value in found["dice"].items():
        print(f"  Dice {name} against the reference: {value:.2f}")

    if args.png:
        _draw(ct, seg, refs, args.png)
        print("wrote", args.png)


if __name__ == "__main__":
    main()
