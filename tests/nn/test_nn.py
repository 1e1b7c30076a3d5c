"""Architectures, registry and Monte Carlo dropout done right."""

import numpy as np
import pytest
import torch

from slitcli.errors import ConfigError
from slitcli.nn import create_model, list_models
from slitcli.nn.layers import set_mc_dropout
from slitcli.nn.predict import mc_predict, mc_predict_naive

TINY = {"height": 16, "width": 96, "rows": 8, "channels": (8, 8), "kernels": (3, 3), "head_hidden": (16,)}


def test_registry_knows_the_paper_and_compact_models():
    assert {"resnet34", "slitnet"} <= set(list_models())
    with pytest.raises(ConfigError, match="unknown model architecture 'vgg'; known: efficientnet, mixer, resnet18, resnet34, slitnet, slitnet2, vit"):
        create_model("vgg")
    with pytest.raises(ConfigError, match="unknown key"):
        create_model("slitnet", colour=1)


@pytest.mark.parametrize("name, kw, shape", [("slitnet", TINY, (3, 2, 16, 96)), ("resnet34", {"width": 8}, (3, 2, 40, 480))])
def test_models_output_mean_and_clamped_logvar(name, kw, shape):
    torch.manual_seed(0)
    model = create_model(name, **kw).eval()
    mu, logvar = model(torch.randn(shape))
    assert mu.shape == logvar.shape == (shape[0],)
    assert torch.all(logvar.abs() <= 10)


def _trained_bn_model():
    torch.manual_seed(1)
    model = create_model("slitnet", **TINY)
    model.train()
    with torch.no_grad():
        for _ in range(3):  # give batch-norm non-trivial running statistics
            model(torch.randn(16, 2, 16, 96) * 3 + 1)
    return model.eval()


def test_mc_passes_differ_and_batchnorm_statistics_do_not_change():
    model = _trained_bn_model()
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    x = torch.randn(5, 2, 16, 96)
    mu, logvar = mc_predict(model, x, n_mc=20)
    assert mu.shape == (20, 5)
    assert torch.all(mu.std(dim=0) > 0)
    for k, v in model.named_buffers():
        assert torch.equal(v, buffers[k]), k
    # Outside sampling, the model is deterministic.
    assert torch.equal(model(x)[0], model(x)[0])
    assert not any(getattr(m, "sampling", False) for m in model.modules())


def test_backbone_once_samples_the_same_distribution_as_full_passes():
    model = _trained_bn_model()
    x = torch.randn(4, 2, 16, 96)
    torch.manual_seed(2)
    fast, _ = mc_predict(model, x, n_mc=2000)
    torch.manual_seed(3)
    slow, _ = mc_predict_naive(model, x, n_mc=2000)
    np.testing.assert_allclose(fast.mean(0), slow.mean(0), atol=4 * float(slow.std(0).max()) / np.sqrt(2000))
    np.testing.assert_allclose(fast.std(0), slow.std(0), rtol=0.1)


def test_the_heads_first_layer_once_gives_the_passes_of_the_whole_head():
    """Only what follows the head's first dropout is sampled: with the same seed, the same
    masks, so the same passes as the whole head run on the repeated features."""
    model = _trained_bn_model()
    x = torch.randn(3, 2, 16, 96)
    torch.manual_seed(7)
    mu, logvar = mc_predict(model, x, n_mc=50)
    torch.manual_seed(7)
    with torch.inference_mode():
        set_mc_dropout(model, True)
        whole_mu, whole_logvar = model.head(model.backbone(x).repeat(50, 1))
        set_mc_dropout(model, False)
    torch.testing.assert_close(mu, whole_mu.view(50, 3), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logvar, whole_logvar.view(50, 3), rtol=1e-5, atol=1e-6)


def test_set_mc_dropout_switches_only_dropout():
    model = _trained_bn_model()
    set_mc_dropout(model, True)
    x = torch.randn(2, 2, 16, 96)
    with torch.no_grad():
        a, b = model(x)[0], model(x)[0]
    set_mc_dropout(model, False)
    assert not torch.equal(a, b)
    assert not model.training
