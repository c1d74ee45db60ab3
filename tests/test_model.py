import numpy as np
import torch

from trafficsiam.model import SiameseMLP, embed


def test_embeddings_live_in_unit_cube_with_dimension_n():
    torch.manual_seed(0)
    model = SiameseMLP(5, hidden=(16, 8), embedding_dim=3)
    x = np.random.default_rng(0).normal(scale=100, size=(50, 5)).astype(np.float32)
    emb = embed(model, x)
    assert emb.shape == (50, 3)
    assert (emb >= 0).all() and (emb <= 1).all()


def test_branches_share_weights():
    torch.manual_seed(0)
    model = SiameseMLP(4, hidden=(8,), embedding_dim=2)
    x = torch.randn(6, 4)
    a, p, n = model.forward_triplet(x[:2], x[2:4], x[4:])
    torch.testing.assert_close(torch.cat([a, p, n]), model(x))


def test_embed_in_chunks_equals_one_pass():
    torch.manual_seed(0)
    model = SiameseMLP(4, hidden=(8,), embedding_dim=2)
    x = np.random.default_rng(1).normal(size=(101, 4)).astype(np.float32)
    np.testing.assert_allclose(embed(model, x, batch_size=7), embed(model, x), rtol=1e-6)


def test_layers_follow_config():
    model = SiameseMLP(10, hidden=(32, 16, 8), embedding_dim=4, dropout=0.2)
    linear = [m for m in model.net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [
        (10, 32), (32, 16), (16, 8), (8, 4)
    ]
    assert sum(isinstance(m, torch.nn.Dropout) for m in model.net) == 3
    assert isinstance(model.net[-1], torch.nn.Sigmoid)


def test_embed_gives_the_forward_pass_bit_for_bit():
    """embed applies the activations in place: the values must be the module's own, for
    every head and with dropout layers (the identity in evaluation mode)."""
    torch.manual_seed(3)
    x = np.random.default_rng(3).normal(size=(700, 9)).astype(np.float32)
    for head, dropout in (("sigmoid", 0.0), ("sigmoid", 0.2), ("l2", 0.0), ("gaussian", 0.1)):
        model = SiameseMLP(9, hidden=(16, 8), embedding_dim=3, dropout=dropout, head=head)
        model.eval()
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()
        got = embed(model, x, batch_size=len(x))
        assert np.array_equal(got, want), head
        # the caller's array is left as it was
        assert np.array_equal(x, np.random.default_rng(3).normal(size=(700, 9)).astype(
            np.float32))
