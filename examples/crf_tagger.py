"""Neural linear-chain CRF tagger on sequences from a known HMM.

Shows :class:`hybridpgm.graphs.LinearChainCRF` as the output layer of a
network (the NN+CRF of Collobert et al., *Natural Language Processing (Almost)
from Scratch*, 2011; CRFs: Lafferty et al., 2001): an embedding + 1-D
convolution (or BiLSTM) emits unary scores, a :class:`~hybridpgm.graphs.CRFHead`
adds learned transitions, and the loss is :math:`-\\log p(y \\mid x)` trained
with :func:`hybridpgm.fit`.

The data come from a random hidden Markov model with ``L`` hidden states
(the tags) and ``V`` symbols, so the Bayes-optimal tagger is known: the true
HMM posterior, itself a linear-chain CRF with unary :math:`\\log B_{y, x_t}`
and transition :math:`\\log A`.  Per-token accuracy of its marginal argmax on
the test set is the ceiling the trained tagger is compared with.

    python examples/crf_tagger.py --num-steps 600
"""

from __future__ import annotations

import argparse
import functools

import torch
from torch import nn

import hybridpgm
from hybridpgm.data.hmm_tagging import hmm_posterior, random_hmm, sample_hmm
from hybridpgm.graphs import CRFHead, LinearChainCRF
from hybridpgm.infer.crf_likelihood import CRFLikelihood, token_accuracy
from hybridpgm.recipes.common import seed_int


class Tagger(nn.Module):
    """Embedding -> (CNN | BiLSTM) -> unary scores -> CRF."""

    def __init__(self, num_symbols, num_labels, hidden=32, encoder="cnn"):
        super().__init__()
        self.embed = nn.Embedding(num_symbols, hidden)
        self.encoder = encoder
        if encoder == "cnn":
            self.net = nn.Conv1d(hidden, hidden, kernel_size=3, padding=1)
        else:
            self.net = nn.LSTM(hidden, hidden // 2, batch_first=True, bidirectional=True)
        self.out = nn.Linear(hidden, num_labels)
        self.head = CRFHead(num_labels)

    def forward(self, x, lengths) -> LinearChainCRF:
        h = self.embed(x)
        if self.encoder == "cnn":
            h = h + torch.relu(self.net(h.transpose(1, 2))).transpose(1, 2)
        else:
            h = h + self.net(h)[0]
        return self.head(self.out(h), lengths)


def main(args):
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    hmm = random_hmm(args.num_states, args.num_symbols, generator=gen)
    train = sample_hmm(hmm, args.num_train, args.min_len, args.max_len, generator=gen)
    test = sample_hmm(hmm, args.num_test, args.min_len, args.max_len, generator=gen)

    tagger = Tagger(args.num_symbols, args.num_states, args.hidden, args.encoder)
    result = hybridpgm.fit(CRFLikelihood(tagger), train, max_steps=args.num_steps,
                           batch_size=args.batch_size, device=args.device, seed=args.seed,
                           optim=functools.partial(torch.optim.Adam, lr=args.lr), progress=False)
    tagger = tagger.cpu().eval()
    x, y, lengths = test
    with torch.no_grad():
        crf = tagger(x, lengths)
        acc_marg = token_accuracy(crf.marginals.argmax(-1), y, lengths)
        acc_viterbi = token_accuracy(crf.argmax(), y, lengths)
        bayes = hmm_posterior(hmm, x, lengths)
        acc_bayes = token_accuracy(bayes.marginals.argmax(-1), y, lengths)
        nll = float(-crf.log_prob(y).mean())
        nll_bayes = float(-bayes.log_prob(y).mean())
    print(f"final training loss           {result.history.loss['crf'][-1]:.4f}")
    print(f"test NLL per sequence          tagger {nll:.4f}   Bayes (true HMM) {nll_bayes:.4f}")
    print(f"test token accuracy            tagger {100 * acc_marg:.2f}% (marginals), "
          f"{100 * acc_viterbi:.2f}% (Viterbi)")
    print(f"Bayes-optimal token accuracy   {100 * acc_bayes:.2f}%   gap {100 * (acc_bayes - acc_marg):.2f} points")
    return {"accuracy": acc_marg, "viterbi_accuracy": acc_viterbi, "bayes_accuracy": acc_bayes,
            "nll": nll, "bayes_nll": nll_bayes}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))  # the first paragraph
    p.add_argument("--num-steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=seed_int, default=0, help="random seed, in [0, 2**32 - 1]")
    p.add_argument("--device", default="auto")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--num-states", type=int, default=5)
    p.add_argument("--num-symbols", type=int, default=10)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--encoder", choices=["cnn", "bilstm"], default="cnn")
    p.add_argument("--num-train", type=int, default=4000)
    p.add_argument("--num-test", type=int, default=2000)
    p.add_argument("--min-len", type=int, default=10)
    p.add_argument("--max-len", type=int, default=30)
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
