import pytest
import torch

from soundscape.errors import ParameterError
from soundscape.torch.encoders import Combiner, build_encoder

SEQ = (40, 12)  # frames, features
IMG = (1, 32, 32)
SMALL = {
    "stacked_cnn": {"num_filters": 6, "num_layers": 2, "output_size": 10},
    "parallel_cnn": {"filter_sizes": [2, 3], "num_filters": 5, "output_size": 10},
    "rnn": {"cell_type": "gru", "hidden_size": 5, "num_layers": 2, "bidirectional": True},
    "transformer": {"num_heads": 2, "num_layers": 1, "hidden_size": 8},
    "resnet18": {},
}


@pytest.mark.parametrize("kind", sorted(SMALL))
@pytest.mark.parametrize("shape", [SEQ, IMG], ids=["sequence", "image"])
def test_every_encoder_gives_fixed_size_vectors_and_gradients(kind, shape):
    torch.manual_seed(0)
    enc = build_encoder({"type": kind, **SMALL[kind]}, shape)
    x = torch.randn(3, *shape, requires_grad=True)
    out = enc(x)
    assert out.shape == (3, enc.output_size)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    enc.eval()
    with torch.no_grad():  # examples are encoded independently in eval mode
        torch.testing.assert_close(enc(x[:1]), enc(x)[:1], atol=1e-4, rtol=1e-4)


def test_output_sizes_follow_the_parameters():
    assert build_encoder({"type": "rnn", "hidden_size": 7, "bidirectional": False}, SEQ).output_size == 7
    assert build_encoder({"type": "rnn", "hidden_size": 7, "bidirectional": True}, SEQ).output_size == 14
    assert build_encoder({"type": "transformer", "hidden_size": 12, "num_heads": 3}, SEQ).output_size == 12
    assert build_encoder({"type": "resnet18"}, (3, 32, 32)).output_size == 512


def test_encoder_mistakes_are_reported():
    with pytest.raises(ParameterError, match="wider than the 4 frames"):
        build_encoder({"type": "parallel_cnn", "filter_sizes": [3, 5]}, (4, 10))
    with pytest.raises(ParameterError, match="divisible by num_heads"):
        build_encoder({"type": "transformer", "hidden_size": 10, "num_heads": 3}, SEQ)
    with pytest.raises(ParameterError, match="unknown encoder 'lstm'"):
        build_encoder({"type": "lstm"}, SEQ)


def test_combiner_uses_category_and_number_inputs():
    torch.manual_seed(0)
    comb = Combiner([4], [(3, 2)], num_numeric=2, num_outputs=5)
    audio = [torch.randn(6, 4)]
    cats = torch.tensor([[0], [1], [2], [1], [0], [2]])
    nums = torch.randn(6, 2)
    out = comb(audio, cats, nums)
    assert out.shape == (6, 5)
    changed = comb(audio, (cats + 1) % 3, nums)
    assert not torch.allclose(out, changed)  # the category embedding matters
    with pytest.raises(ParameterError, match="category input"):
        comb(audio, None, nums)


def test_stacked_cnn_learns_to_separate_two_patterns():
    torch.manual_seed(0)
    n, frames, feats = 32, 30, 8
    y = torch.arange(n) % 2
    x = torch.randn(n, frames, feats) * 0.5
    x[y == 1, ::4, 2] += 3.0  # class 1: a pulse train in one feature bin
    enc = build_encoder({"type": "stacked_cnn", "num_filters": 8, "num_layers": 2, "output_size": 8}, (frames, feats))
    head = torch.nn.Linear(8, 2)
    opt = torch.optim.Adam(list(enc.parameters()) + list(head.parameters()), lr=0.01)
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(head(enc(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    enc.eval()
    assert (head(enc(x)).argmax(1) == y).float().mean() == 1.0
