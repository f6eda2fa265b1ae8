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
from hybridpgm.graphs import CRFHead, LinearChainCRF


def make_hmm(num_states: int, num_symbols: int, generator: torch.Generator):
    """A random sticky HMM: returns ``(log_pi [L], log_A [L, L], log_B [L, V])``."""
    alpha_a = torch.ones(num_states, num_states) + 4.0 * torch.eye(num_states)
    A = torch.distributions.Dirichlet(alpha_a).sample()
    # each state prefers a few symbols; symbols are shared between states (ambiguity)
    B = torch.softmax(2.0 * torch.randn(num_states, num_symbols, generator=generator), -1)
    pi = torch.full((num_states,), 1.0 / num_states)
    return pi.log(), A.log(), B.log()


def sample_hmm(hmm, num_seqs: int, min_len: int, max_len: int, generator: torch.Generator):
    """Sequences padded to ``max_len``: ``(x [N, T], y [N, T], lengths [N])``."""
    log_pi, log_A, log_B = hmm
    lengths = torch.randint(min_len, max_len + 1, (num_seqs,), generator=generator)
    y = torch.zeros(num_seqs, max_len, dtype=torch.long)
    x = torch.zeros(num_seqs, max_len, dtype=torch.long)
    state = torch.multinomial(log_pi.exp().expand(num_seqs, -1), 1, generator=generator).squeeze(-1)
    for t in range(max_len):
        if t > 0:
            state = torch.multinomial(log_A.exp()[state], 1, generator=generator).squeeze(-1)
        y[:, t] = state
        x[:, t] = torch.multinomial(log_B.exp()[state], 1, generator=generator).squeeze(-1)
    mask = torch.arange(max_len) < lengths[:, None]
    return x * mask, y * mask, lengths


def bayes_crf(hmm, x, lengths) -> LinearChainCRF:
    """The exact HMM posterior :math:`p(y \\mid x)` as a linear-chain CRF."""
    log_pi, log_A, log_B = hmm
    unary = log_B.T[x]  # [N, T, L]
    return LinearChainCRF(unary, log_A, start=log_pi, lengths=lengths)


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


class CRFObjective:
    """Negative conditional log-likelihood per sequence (one player, ``"crf"``)."""

    def __init__(self, tagger: Tagger):
        self.module = tagger

    def players(self):
        return {"crf": list(self.module.parameters())}

    def loss(self, player, batch):
        x, y, lengths = batch
        return -self.module(x, lengths).log_prob(y).mean()


def token_accuracy(pred, y, lengths) -> float:
    mask = torch.arange(y.shape[1], device=y.device) < lengths[:, None]
    return float(((pred == y) & mask).sum() / mask.sum())


def main(args):
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    hmm = make_hmm(args.num_states, args.num_symbols, gen)
    train = sample_hmm(hmm, args.num_train, args.min_len, args.max_len, gen)
    test = sample_hmm(hmm, args.num_test, args.min_len, args.max_len, gen)

    tagger = Tagger(args.num_symbols, args.num_states, args.hidden, args.encoder)
    result = hybridpgm.fit(CRFObjective(tagger), train, epochs=10**6, max_steps=args.num_steps,
                           batch_size=args.batch_size, device=args.device, seed=args.seed,
                           optim=functools.partial(torch.optim.Adam, lr=args.lr), progress=False)
    tagger = tagger.cpu().eval()
    x, y, lengths = test
    with torch.no_grad():
        crf = tagger(x, lengths)
        acc_marg = token_accuracy(crf.marginals.argmax(-1), y, lengths)
        acc_viterbi = token_accuracy(crf.argmax(), y, lengths)
        bayes = bayes_crf(hmm, x, lengths)
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
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
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
