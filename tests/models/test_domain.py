"""A model's declared domain against scans inside and outside it."""

from __future__ import annotations

import numpy as np
import pytest
from geometry_cases import make_affine

from napari_medseg.models.domain import ModelDomain, domain_warnings, scan_geometry
from napari_medseg.models.registry import default_specs
from napari_medseg.volume import ScanMetadata, Volume


def _scan(shape, spacing, orientation="LPS", modality="CT") -> Volume:
    affine = make_affine(orientation, spacing=spacing)
    return Volume(
        np.zeros(shape, np.int16), affine, ScanMetadata(modality=modality, format="dicom")
    )


def test_scan_geometry_finds_the_slice_axis_in_any_storage_order():
    axial = scan_geometry((512, 400, 60), make_affine("LPS", spacing=(0.7, 0.8, 2.5)))
    assert axial == {
        "slices": 60.0,
        "slice_spacing": 2.5,
        "in_plane_spacing": 0.8,
        "cranio_caudal_fov": 150.0,
        "in_plane_fov": 358.4,
    }
    # the same scan stored with the slices first (S along I)
    stored = make_affine("SLP", spacing=(2.5, 0.7, 0.8))
    assert scan_geometry((60, 512, 400), stored) == pytest.approx(axial)


def test_the_default_model_warns_on_a_thin_slab_and_not_on_an_abdomen():
    spec = default_specs()["phantom-abdomen-3d"][0]
    domain = spec.domain
    assert domain.body_region == "abdomen" and spec.modality == "CT"
    abdomen = _scan((512, 512, 120), (0.75, 0.75, 2.0))
    assert domain_warnings(domain, spec.modality, abdomen, model=spec.name) == []
    slab = _scan((512, 512, 20), (0.75, 0.75, 2.0))  # 40 mm head-foot
    text = " ".join(domain_warnings(domain, spec.modality, slab, model=spec.name))
    assert "head-foot field of view is 40 mm" in text and "abdomen" in text
    mr = _scan((256, 256, 120), (1.0, 1.0, 2.0), modality="MR")
    text = " ".join(domain_warnings(domain, spec.modality, mr, model=spec.name))
    assert "made for CT; this scan is MR" in text


def test_bounds_are_read_and_checked():
    domain = ModelDomain.from_dict(
        {"body_region": "head", "slice_spacing_mm": [1, 3], "in_plane_fov_mm": None}
    )
    assert domain.slice_spacing_mm == (1.0, 3.0) and domain.in_plane_fov_mm is None
    coarse = _scan((256, 256, 40), (1.0, 1.0, 5.0), modality="")
    (warning,) = domain_warnings(domain, "", coarse)
    assert "slice spacing is 5 mm" in warning and "head scans of 1-3 mm" in warning
    few = ModelDomain(min_slices=32)
    assert domain_warnings(few, "", coarse) == []  # 40 slices: enough
    thin = _scan((256, 256, 12), (1.0, 1.0, 5.0), modality="")
    (warning,) = domain_warnings(few, "", thin)
    assert "the scan has 12 slices" in warning and "at least 32" in warning
    with pytest.raises(ValueError, match="unknown domain field"):
        ModelDomain.from_dict({"spacing": [1, 2]})
    with pytest.raises(ValueError, match="low <= high"):
        ModelDomain.from_dict({"slice_spacing_mm": [3, 1]})


def test_the_engine_reports_a_scan_outside_the_domain():
    from napari_medseg.inference import Segmenter
    from napari_medseg.io import read_scan
    from napari_medseg.samples import sample_path

    scan = read_scan(sample_path("chest_ct"))  # 256 x 200 x 48, 1.14 mm, 5 mm slices
    slab = Volume(scan.array[:, :, 20:28], scan.affine, scan.metadata)  # 8 slices, 40 mm
    segmenter = Segmenter("phantom-abdomen-3d", device="cpu")
    assert segmenter.domain_warnings(scan) == []
    result = segmenter.predict(slab)
    text = " ".join(result.warnings)
    assert "head-foot field of view is 40 mm" in text and "8 slices" in text


def test_medseg_segment_warns_before_the_model_runs(tmp_path, capsys):
    import nibabel as nib

    from napari_medseg.cli import main
    from napari_medseg.io import read_scan
    from napari_medseg.samples import sample_path

    scan = read_scan(sample_path("chest_ct"))
    slab = tmp_path / "slab.nii.gz"
    nib.save(nib.Nifti1Image(scan.array[:, :, 20:28], scan.affine), slab)
    assert main(["segment", str(slab), "-o", str(tmp_path / "labels.nii.gz")]) == 0
    err = capsys.readouterr().err
    warning = err.index("head-foot field of view is 40 mm")
    assert warning < err.index("window batches")  # said before the wait
    assert err.count("head-foot field of view") == 1  # and only once
