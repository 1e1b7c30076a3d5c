"""The architecture zoo: every family builds with either head, keeps position along the dispersion and trains."""

import numpy as np
import pytest
import torch

from slitcli.evaluation.metrics import sigma_nmad
from slitcli.nn import create_model, list_models, pdf
from slitcli.nn.predict import mc_pdf
from slitcli.nn.train import TrainConfig, normalise, train

ZOO = ("resnet18", "efficientnet", "vit", "mixer", "slitnet2")


def test_the_zoo_is_registered():
    assert set(ZOO) <= set(list_models())


@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("head", ["gaussian", "pdf"])
def test_each_architecture_takes_a_cutout_and_keeps_positions(name, head):
    torch.manual_seed(0)
    small = {"rows": 8} if name == "slitnet2" else {}
    model = create_model(name, height=16, width=96, head=head, pdf_bins=50, **small).eval()
    x = torch.randn(3, 2, 16, 96)
    with torch.no_grad():
        out = model(x)
        features = model.backbone(x)
    if head == "pdf":
        assert out.shape == (3, 50)
    else:
        assert out[0].shape == (3,) and out[1].shape == (3,)
    # No global pooling along the dispersion: at least a quarter of the columns reach the head as positions.
    assert features.shape[1] >= model.backbone[-1].reduce.out_channels * 96 // 4
    # A line moved along x changes what the head sees.
    line = torch.randn(1, 2, 16, 96)
    line[..., 6:10, 30] += 5.0
    moved = line.clone()
    moved[..., 6:10, 30] -= 5.0
    moved[..., 6:10, 34] += 5.0
    with torch.no_grad():
        a, b = model.backbone.train()(torch.cat([line, moved]))  # batch statistics: an untrained model's running ones are not its activations
    assert (a - b).abs().max() > 0.01 * a.abs().max()


def test_slitnet2_with_a_pdf_head_places_the_line_to_a_fraction_of_a_pixel():
    from test_train import NO_AUGMENT, line_data

    torch.set_num_threads(1)
    cfg = TrainConfig(architecture="slitnet2", pretrain_epochs=25, finetune_epochs=5, batch_size=32, lr=3e-3, finetune_lr=1e-3, patience=25, min_snr=0, augment=NO_AUGMENT, seed=1)
    tiny = {"rows": 4, "channels": 8, "dilations": (1, 2, 4), "neck_channels": 2, "head_hidden": (32,), "head": "pdf", "pdf_bins": 200, "t_max": 0.742}
    bundle = train(line_data(1024, 0), line_data(256, 1), cfg, tiny)
    test = line_data(512, 2)
    probs, mean_t, var_t = mc_pdf(bundle.model, torch.from_numpy(normalise(test.sci, bundle.scales)), n_mc=50)
    z_pred = pdf.summarise_pdf(probs.double().numpy(), 0.742, mean_t.double().numpy(), var_t.double().numpy())["Z"]
    # One pixel is 0.019 in z.
    assert sigma_nmad(z_pred, test.z) < 0.004
    assert np.all(np.isfinite(z_pred))
