"""ADA (hybridpgm/infer/adversarial/ada.py) pickled by a release before the inputs' integer dtype keyed its dry runs
(cf5a563): it loads and computes the losses an ADA of the same networks built now computes."""

import base64
import pickle
import zlib

import torch

from hybridpgm.infer.adversarial import ADA

# zlib-compressed pickle.dumps, by cf5a563, of ADA(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 1), nn.Flatten(0)),
# nn.Linear(2, 3)) after torch.manual_seed(0) and one loss of each player on _batch(): its _num_classes is {(2,): 3}
OLD_PICKLE = (
    'eNrVV81rG0cU12pl2ZU/EjtpmtpNY0IpaghClmXZJqntOMGFbuK0SaGiEIbR7kgz8WpXuzMb1wWDS3HipgMueNJSCPQaKD303MaG'
    'QP6CQqCX3ntKr4VA+qRd2Za/yKUNXoTezHu/+fq9j51dStxf7o41HnmaLpR8ZtUq1QxzysTPYOs28Tn2GbahjZXUL16+qNbUe1+q'
    'RZWWncypBQJximtEzcou5ARVZNqYc8IBYMSXlaFz2bdtGjRPWIUK9cHk39Gi2pwyNJmsulZgEyX7heubNOM4mVDDM6brCMwc4iuZ'
    'utrQXWam2NpFh/DBzJyKWpGdqIZ9XCUC1gOj7ECloFyOOgPIcR1Ugx7jgjiiaUOcCLWq5DFUwubcPPYtVPMJoq47x5XsNF3bJqZg'
    'rlPvXfMt4hOruYXrSh7ZGhYOoQN19QnEOCoHtt1qBp56UNn1d+H7W7VongmK6uMqTcRbOxDYnscLHJkY9mdFmL5NzNYRQsvbuy17'
    'rNGLuMCCIAvO1zL89e2GnXP3I9vF1kGIgd0Il7eu0IEijze82lsmWAQwC/kc/GtCVCj5xq7YsCEuMFiSV8JGMyho7wrtq0+TjOJN'
    'doVjUSCYzes8+aQUMNvaChgYTC9sM0CIcNdHt3NgSMvucDwHgSsQp0fDA5V9t4pKCwJ2vaamO7VYbCl+L2U/fzDzz+Cthx+9mVmK'
    'X/1Lh/9FL5YuHoWAr/mucCGmUD0nIKg8DQDFegraTAgbDuxYDDtefKWYAqVYqBHE2ReEe/qil0gX20DJqesLr82IF3XoMUd4SSNR'
    'TNTncJ2K124kggDWTBfb6+Bwy17MbBwhNQMbFzdCZcrTij2AGc8XhoZzQ6O5oex4IeuF85q1wNONxKzwEh/DbDe92F5YDWcSYSrH'
    'ziz8/OuDwuOJX54f3zg11rahltV1ZcSMuBG/A9XA0O6orxu+FqBfabTuQksmSgxDFEzQqTS9NK0fchJH8vlsLpdvITG+D4lNLJAY'
    'j0h8Wvtm/aez0xOb5EER1Zb3JC6gxxcVPbGq6MmGjp4KxelZOhi2zoTinVC8G4p0KM6G4lwoMqHIhiIH5RKqO4qSkIP3ZJcLtX6b'
    'IijJVKPYszKD7KGjralHzzcdeuywOzSbHc4N51ocmtzPoREWHJqMHPr9D5MTN3//bH3gk571x8/ObXz75Nn6j+/fX286WD84O+i1'
    'Jo/th5zHfGFkfKgw1sKjvg+PTSzwqEc8XlFPL8wNrk5Mnf9jMzn0V5QclBlxesvQIQe6LcZNn1WZg+svKdolUzeIF8D9Aq47O19I'
    '/+We0lLLHpCFh72s5kdHxsbHcy9VVpvYbWX103vkt6m7RyabkaO9ZNZdenGoS9fIcDZfaH0XafuVrggLpGkRaX9+tfRok7BXm2oa'
    'pJo2pOTJXXfAso0F3NWUbJ+JWv9j0snX4ErrC7jSVoEk2Q6+brQ/fAFPUAoaP7pGv4PvgZZCsXnZpWvLiubpGJ2jdlDK/AvLy26q'
)


def _batch():
    return (torch.tensor([[0.5, -1.0], [1.5, 0.25]]), torch.tensor([0, 2]), torch.tensor([[-0.5, 2.0], [1.0, 1.0]]))


def test_an_ada_pickled_by_an_earlier_release_computes_its_losses():
    """HEAD: AttributeError: 'ADA' object has no attribute '_chains', on the first loss."""
    old = pickle.loads(zlib.decompress(base64.b64decode(OLD_PICKLE)))
    assert old._chains == {((2,), None): (3, False)} and not hasattr(old, "_num_classes")
    new = ADA(old.feature_extractor, old.discriminator, old.classifier)
    for player in new.schedule:
        assert torch.equal(old.loss(player, _batch()), new.loss(player, _batch())), player
    assert torch.equal(old.predict(_batch()[0]), new.predict(_batch()[0]))
    ids = torch.tensor([[1, 0], [0, 1]])  # integer inputs: a dry run of their own, then converted as before
    assert torch.equal(old.loss("generator", (ids, _batch()[1], ids)), new.loss("generator", (ids, _batch()[1], ids)))
