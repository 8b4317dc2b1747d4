"""The SAM2 backend: the package's own video predictor, given slices as frames.

The weights are SAM 2.1 tiny, randomly initialised (seeded) and saved as a checkpoint the
way Meta publishes them (``{"model": state_dict}``); the model runs at a 64-pixel input
to stay quick. The reference is ``sam2``'s own ``build_sam2_video_predictor`` loading
that file itself, reading the frames from a folder with its own loader (``init_state``)
and given the clicks by hand: the backend's masks must equal its masks.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.interactive import Prompt
from napari_medseg.interactive.backends import BackendError, make_backend
from napari_medseg.interactive.backends.sam2 import (
    frame_axis,
    frame_prompts,
    to_frames,
    window_limits,
)
from napari_medseg.interactive.prompts import VoxelPrompt
from napari_medseg.interactive.session import PromptSession
from napari_medseg.volume import Volume
from napari_medseg.window_presets import get_preset

CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
IMAGE_SIZE = 64
FAST = {"image_size": IMAGE_SIZE, "device": "cpu"}
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_state():
    pytest.importorskip("sam2")
    import torch
    from sam2.build_sam import build_sam2_video_predictor

    torch.manual_seed(0)
    model = build_sam2_video_predictor(CONFIG, ckpt_path=None, device="cpu")
    return {key: value.clone() for key, value in model.state_dict().items()}


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_state, tmp_path_factory):
    import torch

    path = tmp_path_factory.mktemp("sam2") / "sam2.1_hiera_tiny_random.pt"
    torch.save({"model": tiny_state}, path)
    return path


# --------------------------------------------------------------- against SAM2's own run
def _scan():
    """A (8, 48, 64) scan of whole numbers 0..255 (so the window (0, 255) leaves them as
    they are) with a bright ellipsoid, stored with its axes permuted and flipped: voxel
    axis 0 runs superior (3 mm), axis 1 anterior, axis 2 to the patient's right."""
    grid = np.indices((8, 48, 64)).astype(np.float64)
    ball = ((grid[0] - 4) / 3.5) ** 2 + ((grid[1] - 24) / 11) ** 2 + ((grid[2] - 33) / 14) ** 2 < 1
    noise = np.random.default_rng(1).integers(0, 30, grid.shape[1:] and (8, 48, 64))
    array = np.where(ball, 190, 50) + noise
    affine = np.array(
        [[0.0, 0.0, -0.7, 20.0], [0.0, 0.9, 0.0, -10.0], [3.0, 0.0, 0.0, 5.0], [0, 0, 0, 1]]
    )
    return Volume(array.astype(np.float32), affine)


def _world(volume, ijk):
    return (volume.affine @ np.r_[np.asarray(ijk, dtype=np.float64), 1.0])[:3]


class _Reference:
    """SAM2's own predictor, built by the package from the checkpoint file, on ``frames``
    (uint8, (N, rows, columns)) read by its own loader from a folder."""

    def __init__(self, checkpoint, frames, folder):
        from PIL import Image
        from sam2.build_sam import build_sam2_video_predictor

        self.predictor = build_sam2_video_predictor(
            CONFIG, ckpt_path=str(checkpoint), device="cpu",
            hydra_overrides_extra=[f"++model.image_size={IMAGE_SIZE}"],
        )
        folder.mkdir(exist_ok=True)
        for index, frame in enumerate(frames):
            # SAM2's loader takes files named *.jpg and PIL reads them by content: PNG
            # data keeps the frames exact (JPEG would change them)
            Image.fromarray(np.repeat(frame[:, :, None], 3, axis=2)).save(
                folder / f"{index:05d}.jpg", format="PNG"
            )
        self.state = self.predictor.init_state(str(folder))
        self.shape = frames.shape

    def masks(self, calls):
        """The mask (N, rows, columns) for ``calls``: ``[(frame, points or None, labels or
        None, box or None), ...]``, given to a reset state, then propagated both ways."""
        self.predictor.reset_state(self.state)
        for frame, points, labels, box in calls:
            self.predictor.add_new_points_or_box(
                self.state, frame_idx=frame, obj_id=1, points=points, labels=labels, box=box
            )
        masks = np.zeros(self.shape, dtype=bool)
        for reverse in (False, True):
            for index, _ids, logits in self.predictor.propagate_in_video(
                self.state, reverse=reverse
            ):
                masks[index] = (logits[0, 0] > 0.0).numpy()
        return masks


@pytest.mark.sam2
def test_masks_equal_sam2s_own_video_predictor(tiny_checkpoint, tmp_path):
    volume = _scan()
    backend = make_backend("sam2", tiny_checkpoint, window=(0.0, 255.0), **FAST)
    assert backend.licence == "Apache-2.0" and backend.crops is False
    encoded = []
    original = backend._predictor.forward_image
    backend._predictor.forward_image = lambda image: (encoded.append(1), original(image))[1]

    session = PromptSession(volume, backend)
    # a box on slice i = 3 (voxel corners (3, 14, 20) and (3, 34, 46)), a click on slice
    # i = 5, a negative click on slice 3; frames are slices along axis 0, rows along j,
    # columns along k: SAM2's (x, y) is (k, j)
    prompts = [
        Prompt.box(_world(volume, (3, 14, 20)), _world(volume, (3, 34, 46))),
        Prompt.point(_world(volume, (5, 24, 33))),
        Prompt.point(_world(volume, (3, 20, 25)), positive=False),
    ]
    box = [20.0, 14.0, 46.0, 34.0]
    expected_calls = [
        [(3, None, None, box)],
        [(3, None, None, box), (5, [[33.0, 24.0]], [1], None)],
        [(3, [[25.0, 20.0]], [0], box), (5, [[33.0, 24.0]], [1], None)],
    ]
    frames = volume.array.astype(np.uint8)  # the window (0, 255) on whole numbers
    reference = _Reference(tiny_checkpoint, frames, tmp_path / "frames")
    for step, (prompt, calls) in enumerate(zip(prompts, expected_calls, strict=True)):
        mask = session.add(prompt).mask
        assert np.array_equal(mask, reference.masks(calls)), f"prompt {step}"
        assert 0 < mask.sum() < mask.size  # a real mask, not an empty or a full one
        if step == 0:
            assert len(encoded) == len(frames)  # each slice encoded once...
    # a click alone: frames along the axial axis (voxel axis 0 points superior)
    session.reset()
    mask = session.add(prompts[1]).mask
    assert np.array_equal(mask, reference.masks([(5, [[33.0, 24.0]], [1], None)]))
    assert len(encoded) == len(frames)  # ...and never again for the next clicks


@pytest.mark.sam2
def test_scan_frames_are_sam2s_own_loader_frames(tiny_checkpoint, tmp_path):
    """The frames made in memory equal what SAM2's folder loader makes of them."""
    from PIL import Image
    from sam2.utils.misc import load_video_frames

    from napari_medseg.interactive.backends import sam2 as backend_module

    frames = np.random.default_rng(2).integers(0, 256, (3, 40, 56)).astype(np.uint8)
    for index, frame in enumerate(frames):
        Image.fromarray(np.repeat(frame[:, :, None], 3, axis=2)).save(
            tmp_path / f"{index:05d}.jpg", format="PNG"
        )
    images, height, width = load_video_frames(
        str(tmp_path), IMAGE_SIZE, offload_video_to_cpu=True, compute_device="cpu"
    )
    ours = backend_module._Frames(
        frames, IMAGE_SIZE, *backend_module._loader_normalisation(), "cpu"
    )
    assert (ours.height, ours.width, len(ours)) == (height, width, 3) == (40, 56, 3)
    for index in range(3):
        assert ours[index].dtype == images[index].dtype
        assert np.array_equal(ours[index].numpy(), images[index].numpy())


# ------------------------------------------------------------------- frames and prompts
def test_the_window_is_ct_soft_tissue_or_percentiles():
    rng = np.random.default_rng(0)
    ct = rng.normal(40, 30, (20, 20, 20)).astype(np.float32)
    ct[:, :5] = -1000.0  # air around the body
    assert window_limits(ct) == get_preset("abdomen").limits == (-150.0, 250.0)
    mr = rng.gamma(2.0, 100.0, (20, 20, 20)).astype(np.float32)
    assert window_limits(mr) == pytest.approx(tuple(np.percentile(mr, (0.5, 99.5))))
    assert window_limits(mr, "lung") == (-1350.0, 150.0)
    assert window_limits(mr, (10, 20)) == (10.0, 20.0)
    for bad in ((20, 10), (1, 2, 3), ("a", 1)):
        with pytest.raises(BackendError, match="low < high"):
            window_limits(mr, bad)
    with pytest.raises(BackendError, match="unknown CT window 'lungs'"):
        window_limits(mr, "lungs")
    frames = to_frames(np.array([[[-200.0, 50.0, 300.0]]]), 2, (-150.0, 250.0))
    assert frames.shape == (3, 1, 1) and frames.ravel().tolist() == [0, 128, 255]


def test_frames_follow_the_box_else_the_option_else_the_axial_axis():
    point = VoxelPrompt("point", np.array([[1.0, 2.0, 3.0]]))
    box = VoxelPrompt("box", np.array([[4.0, 1.0, 2.0], [4.0, 5.0, 9.0]]), True, 0)
    assert frame_axis((point, box), (1.0, 1.0, 1.0)) == 0
    assert frame_axis((point,), (1.0, 1.0, 1.0), slice_axis=1) == 1
    # points alone: the axial axis, the voxel axis closest to superior (here axis 1)
    affine = np.array([[0.0, 0.1, -0.8, 0], [0.9, 0.0, 0.0, 0], [0.0, 2.5, 0.1, 0], [0, 0, 0, 1]])
    assert frame_axis((point,), (0.9, 2.5, 0.8), affine=affine) == 1
    assert frame_axis((point,), (0.9, 2.5, 0.8), slice_axis=2, affine=affine) == 2
    # without an affine: the coarse axis (the slices), K when isotropic
    assert frame_axis((point,), (0.8, 2.5, 0.8)) == 1
    assert frame_axis((point,), (1.0, 1.0, 1.0)) == 2


def test_prompts_become_clicks_on_their_frames():
    box = VoxelPrompt("box", np.array([[4.0, 1.0, 2.0], [4.0, 5.0, 9.0]]), True, 0)
    later_box = VoxelPrompt("box", np.array([[4.0, 2.0, 3.0], [4.0, 6.0, 8.0]]), True, 0)
    negative = VoxelPrompt("point", np.array([[3.6, 2.0, 7.0]]), False)
    stroke = VoxelPrompt("scribble", np.c_[np.full(30, 6.0), np.arange(30.0), np.ones(30)])
    inputs = frame_prompts((box, negative, stroke, later_box), axis=0, n_frames=8)
    assert list(inputs) == [4, 6]
    assert inputs[4].box == (3.0, 2.0, 8.0, 6.0)  # the newest box on the frame, (x, y)
    assert inputs[4].points == [(7.0, 2.0)] and inputs[4].labels == [0]
    assert len(inputs[6].points) == 8 and inputs[6].points[0] == (1.0, 0.0)
    assert inputs[6].points[-1] == (1.0, 29.0) and set(inputs[6].labels) == {1}
    with pytest.raises(BackendError, match="not a negative one"):
        frame_prompts((VoxelPrompt("box", box.ijk, False, 0),), 0, 8)
    across = VoxelPrompt("box", np.array([[1.0, 3.0, 2.0], [5.0, 3.0, 9.0]]), True, 1)
    with pytest.raises(BackendError, match="along voxel axis 0.*across axis 1"):
        frame_prompts((box, across), 0, 8)


# ------------------------------------------------------------------- bad checkpoints
def test_a_missing_or_unreadable_checkpoint_is_one_clear_error(tmp_path):
    import torch

    with pytest.raises(BackendError, match=r"nope\.pt: SAM2 checkpoint not found\. Give"):
        make_backend("sam2", tmp_path / "nope.pt")
    with pytest.raises(BackendError, match="is a folder, not a SAM2 checkpoint"):
        make_backend("sam2", tmp_path)
    text = tmp_path / "notes.pt"
    text.write_text("these are not weights\n")
    with pytest.raises(BackendError, match=r"notes\.pt: is not a PyTorch checkpoint.*Give a SAM2"):
        make_backend("sam2", text)
    other = tmp_path / "unet.pt"
    torch.save({"model": torch.nn.Linear(2, 2).state_dict()}, other)
    with pytest.raises(BackendError, match=r"unet\.pt: holds weights of another network, not SAM2"):
        make_backend("sam2", other)


class _RunsCode:
    def __reduce__(self):
        return (print, ("this ran while loading",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, capsys):
    import torch

    path = tmp_path / "sam2_hiera_tiny.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "extra": _RunsCode()}, path)
    with pytest.raises(BackendError, match=r"sam2_hiera_tiny\.pt: holds Python objects that would "
                                           r"run code when loaded \(a pickled builtins\.print\)"):
        make_backend("sam2", path)
    assert "this ran" not in capsys.readouterr().out


@pytest.mark.sam2
def test_a_checkpoint_of_another_size_or_shape_is_named(tiny_state, tiny_checkpoint, tmp_path):
    import torch

    with pytest.raises(BackendError, match=r"random\.pt: is a SAM 2\.1 tiny checkpoint, but config "
                                           r"sam2\.1_hiera_s \(SAM 2\.1 small\) was asked for\. "
                                           r".*config='sam2\.1_hiera_t'"):
        make_backend("sam2", tiny_checkpoint, config="sam2.1_hiera_s")
    with pytest.raises(BackendError, match="unknown SAM2 config 'sam3_hiera_t'"):
        make_backend("sam2", tiny_checkpoint, config="sam3_hiera_t")
    # SAM 2.0 weights are told from 2.1 by the 2.1-only parameters
    old = {k: v for k, v in tiny_state.items()
           if not k.startswith(("no_obj_embed_spatial", "obj_ptr_tpos_proj"))}
    torch.save({"model": old}, tmp_path / "old.pt")
    with pytest.raises(BackendError, match=r"is a SAM 2 tiny checkpoint, but config sam2\.1_hi"):
        make_backend("sam2", tmp_path / "old.pt", config="sam2.1_hiera_t")
    # eleven blocks: no published size
    last = "image_encoder.trunk.blocks.11."
    short = {k: v for k, v in tiny_state.items() if not k.startswith(last)}
    torch.save({"model": short}, tmp_path / "short.pt")
    with pytest.raises(BackendError, match=r"96 wide with 11 blocks, which matches no published"):
        make_backend("sam2", tmp_path / "short.pt")
    # the right size, one tensor of another shape: the parameter is named
    bent = dict(tiny_state)
    bent["obj_ptr_proj.layers.0.weight"] = torch.zeros(3, 3)
    torch.save({"model": bent}, tmp_path / "bent.pt")
    with pytest.raises(BackendError, match=r"bent\.pt: does not fit SAM2 config sam2\.1_hiera_t: "
                                           r"1 shape mismatches \(obj_ptr_proj"):
        make_backend("sam2", tmp_path / "bent.pt")
    with pytest.raises(BackendError, match="multiple of 32"):
        make_backend("sam2", tiny_checkpoint, image_size=100)


@pytest.mark.sam2
def test_without_the_sam2_package_the_error_says_how_to_install_it(
    tiny_checkpoint, monkeypatch
):
    import sys

    monkeypatch.setitem(sys.modules, "sam2", None)
    monkeypatch.setitem(sys.modules, "sam2.build_sam", None)
    with pytest.raises(BackendError, match=r"needs the sam2 package.*napari-medseg\[sam2\]"):
        make_backend("sam2", tiny_checkpoint, **FAST)
