"""``DBM.mean_field`` under :func:`torch.autocast`: the sweeps run with it off, in the parameters' dtype."""

import torch

from hybridpgm.energy import DBM


def _dbm() -> DBM:
    torch.manual_seed(0)
    dbm = DBM([40, 30, 20])
    with torch.no_grad():
        for w in dbm.weights:
            w.normal_(0, 0.5)
    return dbm


def test_mean_field_under_bf16_autocast_is_the_float32_mean_field():
    """Found by an audit: the means came back in float32 but from bfloat16 products, up to 3.8e-3 off here.
    Now they are the float32 ones exactly."""
    dbm = _dbm()
    v = torch.bernoulli(torch.full((16, 40), 0.5), generator=torch.Generator().manual_seed(2))
    plain = dbm.mean_field(v)
    for dtype in (torch.bfloat16, torch.float16):
        with torch.autocast("cpu", dtype=dtype):
            got = dbm.mean_field(v)
        assert [m.dtype for m in got] == [torch.float32] * 3
        assert all(torch.equal(a, b) for a, b in zip(got, plain))


def test_mean_field_of_a_bfloat16_dbm_outside_autocast_stays_bfloat16():
    """Autocast off is no conversion: a DBM made bfloat16 by ``.to`` keeps computing in bfloat16."""
    dbm = _dbm().to(torch.bfloat16)
    v = torch.bernoulli(torch.full((4, 40), 0.5), generator=torch.Generator().manual_seed(2))
    assert [m.dtype for m in dbm.mean_field(v.to(torch.bfloat16))] == [torch.bfloat16] * 3
