"""The test bed: generator, pseudo-VAE, the trained checkpoint and what it learned."""
import json

import pytest
import torch

from rhymeflow_core.keyframes import KeyframePlan, select_keyframes
from rhymeflow_core.metrics import psnr_per_frame
from rhymeflow_core.sampler import sample_dense
from rhymeflow_core.testbed import imagery, pseudo_vae
from rhymeflow_core.testbed.classifier import fit
from rhymeflow_core.testbed.evaluate import CUT_PSNR, adjacent_psnr, main as evaluate_main
from rhymeflow_core.testbed.model_io import CARD_NAME, DEFAULT_DIR, TRAIN_SHIFT, checkpoint_path, load_model
from rhymeflow_core.testbed.runner import Job, run_sampler
from rhymeflow_core.testbed.train import TRAIN_CONFIG, heldout_loss
from rhymeflow_core.testbed.conditioning import CLASSES
from rhymeflow_core.testbed.coverage import fit_photos
from rhymeflow_core.testbed.vae_fit import fit_basis, reconstruction_psnr
from rhymeflow_core.testbed.videos import VideoSpec, frame_photos, render_video
from rhymeflow_core.testbed.wan_dit import WanModel

needs_checkpoint = pytest.mark.skipif(not checkpoint_path().exists(), reason="trained test-bed checkpoint not present")


def test_generator_is_deterministic_and_cuts_start_new_scenes():
    a, cuts = render_video(VideoSpec(1, 7, 16, cuts=(5, 11)))
    b, _ = render_video(VideoSpec(1, 7, 16, cuts=(5, 11)))
    plain, no_cuts = render_video(VideoSpec(1, 7, 16, cuts=()))
    assert torch.equal(a, b) and cuts == (5, 11) and no_cuts == ()
    assert torch.equal(a[:, :5], plain[:, :5])  # the first scene is the same scene
    assert not torch.equal(a[:, 5], plain[:, 5])  # a new scene starts exactly at the cut
    assert a.shape == (3, 16, 64, 64) and 0 <= a.min() and a.max() <= 1


def test_generator_is_multimodal_given_the_scene():
    """Two seeds of one scene differ far more than a frame from the next: where the camera and sprites are is random."""
    a, _ = render_video(VideoSpec(0, 1, 8, cuts=()))
    b, _ = render_video(VideoSpec(0, 2, 8, cuts=()))
    between = psnr_per_frame(a, b).mean()
    within = psnr_per_frame(a[:, 1:], a[:, :-1]).mean()
    assert between < within - 3, (float(between), float(within))


def test_cut_rule_separates_cuts_from_motion():
    """The coherence target drops cut pairs by a PSNR rule; on generator videos it finds exactly the true cuts."""
    for seed in range(6):
        v, cuts = render_video(VideoSpec(seed % len(CLASSES), 50 + seed, 16, cuts=(5, 11)))
        v = pseudo_vae.decode(pseudo_vae.encode(v[None]))[0]
        p = psnr_per_frame(v[:, 1:], v[:, :-1])
        assert [t + 1 for t in range(15) if p[t] < CUT_PSNR] == list(cuts), p.tolist()
        assert adjacent_psnr(v).numel() == 15 - len(cuts)


def test_generator_supports_21_frames_and_seeded_cuts():
    counts = [len(render_video(VideoSpec(c, s, 21))[1]) for c in range(len(CLASSES)) for s in range(6)]
    assert set(counts) <= {0, 1, 2} and max(counts) == 2
    with pytest.raises(ValueError, match="cls=9"):
        render_video(VideoSpec(9, 0))


def test_pseudo_vae_is_a_projection_with_reported_loss():
    v, _ = render_video(VideoSpec(2, 3, 5))
    z = pseudo_vae.encode(v[None])
    assert z.shape == (1, 16, 5, 16, 16)
    once = pseudo_vae.decode(z)
    twice = pseudo_vae.decode(pseudo_vae.encode(once))
    assert (twice - once).abs().mean() < 2e-3  # a projection: a decoded video encodes to itself (up to clamping at 0 and 1)
    assert reconstruction_psnr(videos=4, frames=4) > 28  # lossy, but faces and digits stay legible (the card records the figure)


def test_shipped_basis_is_what_the_fit_gives():
    fitted = fit_basis(videos_per_class=64, frames=8)
    mean, comp, scale = pseudo_vae._basis()
    torch.testing.assert_close(fitted["components"], comp, atol=1e-4, rtol=0)
    torch.testing.assert_close(fitted["scale"], scale, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(fitted["mean"], mean, atol=1e-6, rtol=0)


@pytest.mark.parametrize("strategy", ["semantic", "dynamic"])
@pytest.mark.parametrize("cls", [0, 1])
def test_keyframe_selection_finds_the_scene_cuts(strategy, cls):
    for seed in range(3):
        v, cuts = render_video(VideoSpec(cls, seed, 16, cuts=(5, 11)))
        chosen = select_keyframes(pseudo_vae.encode(v[None]), KeyframePlan(strategy=strategy, budget=4))
        assert set(cuts) <= set(chosen.indices), (seed, chosen.indices)


def test_reference_state_dict_has_comfyui_wan_names():
    keys = set(WanModel(TRAIN_CONFIG).state_dict())
    for k in ("patch_embedding.weight", "text_embedding.0.weight", "time_projection.1.weight", "head.modulation",
              "blocks.0.self_attn.norm_q.weight", "blocks.0.cross_attn.k.weight", "blocks.0.norm3.weight",
              f"blocks.{TRAIN_CONFIG.num_layers - 1}.ffn.2.weight", "blocks.0.modulation", "head.head.weight"):
        assert k in keys
    assert TRAIN_CONFIG.num_heads >= 4  # every real Wan has several heads; ComfyUI derives heads = dim // 128


@needs_checkpoint
def test_checkpoint_loads_and_card_matches():
    card = json.loads((DEFAULT_DIR / CARD_NAME).read_text())
    model = load_model()
    assert len(model.blocks) == card["config"]["num_layers"] and model.dim == card["config"]["dim"]
    assert checkpoint_path().stat().st_size <= 20_000_000
    assert card["data"]["scenes"] == imagery.scenes()  # the shipped weights learned the photographs imagery.py makes


def test_evaluation_refuses_weights_trained_on_other_photographs(tmp_path, capsys):
    card = json.loads((DEFAULT_DIR / CARD_NAME).read_text())
    card["data"]["scenes"]["astronaut"]["photographs"] = ["astronaut", "camera"]
    (tmp_path / CARD_NAME).write_text(json.dumps(card))
    with pytest.raises(SystemExit):
        evaluate_main(["--folder", str(tmp_path), "--no-write"])
    assert "'camera'" in capsys.readouterr().err  # the message names what the card says


@needs_checkpoint
def test_trained_model_denoises_far_better_than_untrained():
    torch.manual_seed(0)
    untrained = heldout_loss(WanModel(TRAIN_CONFIG).eval(), TRAIN_SHIFT, n_batches=1)
    trained = heldout_loss(load_model(), TRAIN_SHIFT, n_batches=1)
    assert trained < 0.5 * untrained, (trained, untrained)


def test_scene_classifier_works_and_rejects_garbage():
    clf = fit()
    assert clf.heldout_accuracy >= 0.9  # the measure itself works on held-out generator videos
    noise = torch.rand(3, 12, 64, 64)
    assert not any(clf.recognised(noise, c) for c in range(len(CLASSES)))  # a linear head alone would call it a scene


def test_frame_photos_switch_exactly_at_the_cuts():
    for seed in range(8):
        spec = VideoSpec(seed % len(CLASSES), 300 + seed, 16)
        photos, cuts = frame_photos(spec), render_video(spec)[1]
        assert [t for t in range(1, 16) if photos[t] != photos[t - 1]] == list(cuts), (photos, cuts)
    assert {frame_photos(VideoSpec(0, s, 4, cuts=()))[0] for s in range(20)} == {0, 1}  # either photograph opens a clip


def test_photo_classifier_tells_a_scenes_photographs_apart():
    """The coverage diagnostic's measure: held-out generator frames get their photograph, and a clip of one
    photograph reads as that photograph only (share 0 or 1), while a clip cut between both reads as both."""
    clf = fit_photos()
    assert clf.heldout_accuracy >= 0.95, clf.heldout_accuracy
    one = [VideoSpec(c, 950 + c, 8, cuts=()) for c in range(len(CLASSES))]
    videos = [pseudo_vae.decode(pseudo_vae.encode(render_video(s)[0][None]))[0] for s in one]
    shares = clf.second_share(videos, [s.cls for s in one])
    assert all(shares[CLASSES[s.cls]] == frame_photos(s)[0] for s in one), shares
    both = VideoSpec(2, 960, 8, cuts=(4,))
    video = pseudo_vae.decode(pseudo_vae.encode(render_video(both)[0][None]))[0]
    assert clf.second_share([video], [2])["cosmos"] == 0.5


@needs_checkpoint
def test_dense_samples_are_recognisably_their_scene():
    """Each scene's 30-step dense sample is classified as that scene, and most are also typical of the generator's
    videos (a noise model fails both). The issue's target (90% recognised) is the evaluation's, not this test's:
    the shipped checkpoint's figure is in its model card and README."""
    clf = fit()
    model = load_model()
    recognised = 0
    for cls in range(len(CLASSES)):
        latent, _, _ = run_sampler(sample_dense, model, Job(cls=cls, seed=11, frames=12, steps=30))
        video = pseudo_vae.decode(latent)[0]
        assert clf.predict(video) == cls, (CLASSES[cls], clf.log_probs(video).exp().tolist())
        recognised += clf.recognised(video, cls)
    assert recognised >= len(CLASSES) / 2, recognised
